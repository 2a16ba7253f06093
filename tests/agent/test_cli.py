"""The ``swarmdrive`` command as a person runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.exit_codes import ExitCode


def swarmdrive(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("swarmdrive: error:")]
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w in errors[0], errors[0]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "frames"
    r = swarmdrive("render", "--town", "Town03", "--weather", "ClearSunset", "-n", "5",
                   "--seed", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 5
    return out


def test_render_writes_pngs_labels_and_classes(frames):
    assert len(list((frames / "images").glob("*.png"))) == 5
    assert len(list((frames / "labels").glob("*.txt"))) == 5
    assert (frames / "classes.txt").read_text().split()[0] == "car"


def test_infer_frames_with_labels_and_crops(frames, trained, tmp_path):
    r = swarmdrive("infer", "--model", trained.onnx, frames)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    n_boxes = sum(len(p.read_text().splitlines()) for p in (frames / "labels").glob("*.txt"))
    assert len(lines) == n_boxes > 0
    assert all(len(x["box"]) == 4 and 0 <= x["score"] <= 1 and "label" in x for x in lines)
    # A crop image (no label file) gets one result for the whole image.
    import cv2

    from models.preprocess import crop
    def area(x):
        return (x["box"][2] - x["box"][0]) * (x["box"][3] - x["box"][1])

    biggest = max(lines, key=area)
    crop_path = tmp_path / "crop.png"
    cv2.imwrite(str(crop_path), crop(cv2.imread(biggest["path"]), biggest["box"], 32))
    r = swarmdrive("infer", "--model", trained.onnx, crop_path)
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert rec["box"] is None and "label" not in rec
    assert rec["class"] == biggest["class"]  # the same pixels, the same answer


@pytest.mark.slow
def test_train_export_int8_end_to_end(frames, tmp_path):
    ckpt = tmp_path / "m.pt"
    r = swarmdrive("train", "--town", "Town01", "--weather", "ClearNoon", "--frames", "4",
                   "--steps", "30", "--eval-frames", "1", "--out", ckpt)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["steps"] == 30 and len(summary["model_hash"]) == 64
    assert 0 <= summary["fleet_test"]["accuracy"] <= 1
    r = swarmdrive("export", ckpt, "--out", tmp_path / "m.onnx", "--calibration", frames)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["max_abs_logit_diff"] <= 1e-4
    r = swarmdrive("export", ckpt, "--int8", "--calibration", frames, "--out", tmp_path / "q.onnx")
    assert_one_line_error(r, ExitCode.EXPORT, "calibration needs at least 16")  # 5 frames: too few
    r = swarmdrive("export", ckpt, "--int8", "--out", tmp_path / "q.onnx")  # sim frames instead
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["precision"] == "int8"
    r = swarmdrive("infer", "--model", tmp_path / "q.onnx", frames)
    assert r.returncode == 0 and r.stdout.count("\n") > 0


def test_corrupt_image_one_line_error(trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    r = swarmdrive("infer", "--model", trained.onnx, bad)
    assert_one_line_error(r, ExitCode.BAD_INPUT_FILE, str(bad), "not a readable image")


def test_non_image_and_missing_files(trained, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    r = swarmdrive("infer", "--model", trained.onnx, txt)
    assert_one_line_error(r, ExitCode.BAD_INPUT_FILE, "notes.txt")
    r = swarmdrive("infer", "--model", trained.onnx, tmp_path / "gone.png")
    assert_one_line_error(r, ExitCode.BAD_INPUT_FILE, "gone.png", "cannot read")


def test_folder_with_corrupt_files_classifies_the_rest(frames, trained, tmp_path):
    for p in list((frames / "images").iterdir())[:2]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "zz.png").write_bytes(b"garbage")
    r = swarmdrive("infer", "--model", trained.onnx, tmp_path)
    assert_one_line_error(r, ExitCode.BAD_INPUT_FILE, "skipped 1")
    assert len(r.stdout.splitlines()) >= 2


def test_empty_folder(trained, tmp_path):
    r = swarmdrive("infer", "--model", trained.onnx, tmp_path)
    assert_one_line_error(r, ExitCode.CAMERA, str(tmp_path), "contains no images")
    r = swarmdrive("train", "--source", tmp_path, "--out", tmp_path / "m.pt")
    assert_one_line_error(r, ExitCode.CAMERA, "contains no images")


def test_unreadable_device(tmp_path):
    r = swarmdrive("train", "--source", "video:97", "--out", tmp_path / "m.pt")
    assert_one_line_error(r, ExitCode.CAMERA, "video device 97", "cannot open")


def test_missing_and_invalid_model_files(frames, tmp_path):
    r = swarmdrive("infer", "--model", tmp_path / "none.onnx", frames)
    assert_one_line_error(r, ExitCode.MODEL_FILE, "none.onnx", "no such file")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01\x02 definitely not onnx")
    r = swarmdrive("infer", "--model", junk, frames)
    assert_one_line_error(r, ExitCode.MODEL_FILE, "junk.onnx")
    r = swarmdrive("export", junk, "--out", tmp_path / "x.onnx")
    assert_one_line_error(r, ExitCode.MODEL_FILE, "junk.onnx", "not a torch checkpoint")
    r = swarmdrive("export", tmp_path / "none.pt", "--out", tmp_path / "x.onnx")
    assert_one_line_error(r, ExitCode.MODEL_FILE, "none.pt", "no such file")


def test_unknown_town_and_weather(tmp_path):
    r = swarmdrive("render", "--town", "Town11", "--weather", "ClearNoon", "--out", tmp_path)
    assert_one_line_error(r, ExitCode.BAD_VALUE, "unknown town 'Town11'")
    r = swarmdrive("train", "--weather", "Drizzle", "--out", tmp_path / "m.pt")
    assert_one_line_error(r, ExitCode.BAD_VALUE, "unknown weather 'Drizzle'")
    r = swarmdrive("train", "--source", "sim:Town01/Snow", "--out", tmp_path / "m.pt")
    assert_one_line_error(r, ExitCode.BAD_VALUE, "unknown weather 'Snow'")


def test_usage_errors_exit_2(tmp_path):
    r = swarmdrive("render", "--town", "Town01", "--weather", "ClearNoon", "-n", "0",
                   "--out", tmp_path)
    assert r.returncode == ExitCode.USAGE and "Traceback" not in r.stderr
    assert "not a positive integer" in r.stderr


@pytest.mark.slow
def test_sim_memory_writes_result_and_model(tmp_path):
    r = swarmdrive("sim", "--transport", "memory", "--vehicles", "3", "--rounds", "2",
                   "--local-steps", "2", "--batch-size", "8", "--frames", "3", "--eval-every", "1",
                   "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "round 2/2" in r.stderr and "vehicle 2: " in r.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["rounds"]) == 2 and 0 <= result["swarm_acc"] <= 1
    assert result["bytes_per_round"] < 4 * 145_000 / 10
    from models.checkpoint import load_checkpoint

    _, ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt["model_hash"] == result["model_hash"]


@pytest.mark.slow
def test_sim_over_libp2p_writes_every_vehicle_and_the_chain_hash(tmp_path):
    r = swarmdrive("sim", "--vehicles", "3", "--rounds", "2", "--local-steps", "2",
                   "--batch-size", "8", "--frames", "3", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "round 2/2 committed by 0x" in r.stderr and "with 3 contributions" in r.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["transport"] == "libp2p" and len(result["vehicles"]) == 3
    chain_hash = result["chain_model_hash"]
    assert len(chain_hash) == 64
    for address, v in result["vehicles"].items():
        assert address.startswith("0x") and v["peer_id"].startswith("16Uiu2")
        assert v["model_hash"] == chain_hash and 0 <= v["accuracy"] <= 1
    from models.checkpoint import load_checkpoint

    _, ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt["model_hash"] == chain_hash


def test_sim_rejects_impossible_settings(tmp_path):
    r = swarmdrive("sim", "--transport", "memory", "--vehicles", "2", "--attackers", "2",
                   "--out", tmp_path)
    assert_one_line_error(r, ExitCode.USAGE, "--attackers 2")
    r = swarmdrive("sim", "--attackers", "1", "--out", tmp_path)
    assert_one_line_error(r, ExitCode.USAGE, "--transport memory only")
    r = swarmdrive("sim", "--vehicles", "3", "--min-peers", "4", "--out", tmp_path)
    assert_one_line_error(r, ExitCode.USAGE, "--min-peers 4")
    r = swarmdrive("sim", "--density", "0", "--out", tmp_path)
    assert_one_line_error(r, ExitCode.USAGE, "density")
