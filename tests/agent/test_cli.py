"""The ``swarmdrive`` command as a person runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.exit_codes import ExitCode
from models.train import native_bf16


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


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained FrameNet, exported: enough to check what infer prints and draws."""
    import numpy as np
    import torch

    from models.detector import DetConfig, FrameNet
    from models.onnx_export import export
    from sim.world import CLASSES

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("detector") / "det.onnx"
    noise = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    export(FrameNet(DetConfig()), CLASSES, out, noise)
    return out


def test_infer_with_a_detector_prints_objects_ap_and_draws_frames(frames, detector, tmp_path):
    import cv2

    r = swarmdrive("infer", "--model", detector, frames, "--min-score", "0.01", "--draw",
                   tmp_path / "drawn")
    assert r.returncode == 0, r.stderr
    objects = [json.loads(x) for x in r.stdout.splitlines()]
    assert objects and all(len(o["box"]) == 4 and 0.01 <= o["score"] <= 1 for o in objects)
    assert {o["path"] for o in objects} <= {str(p) for p in (frames / "images").glob("*.png")}
    per_frame = [line for line in r.stderr.splitlines() if ": AP@0.5 " in line]
    assert len(per_frame) == 5
    assert "mAP@0.5 " in r.stderr and "over 5 labelled frame(s)" in r.stderr
    drawn = sorted((tmp_path / "drawn").glob("*.jpg"))
    assert len(drawn) == 5
    img = cv2.imread(str(drawn[0]))
    assert img.shape == (240, 320, 3)


def test_infer_on_a_video_writes_an_annotated_video(frames, detector, tmp_path):
    import cv2

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    for png in sorted((frames / "images").glob("*.png")):
        writer.write(cv2.imread(str(png)))
    writer.release()
    r = swarmdrive("infer", "--model", detector, f"video:{clip}", "--min-score", "0.01",
                   "--draw", tmp_path / "drawn")
    assert r.returncode == 0, r.stderr
    assert {json.loads(x)["path"] for x in r.stdout.splitlines()} <= {
        f"video {clip}#{i}" for i in range(5)}
    cap = cv2.VideoCapture(str(tmp_path / "drawn" / "clip.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5


def test_train_export_and_infer_a_detector(tmp_path):
    r = swarmdrive("train", "--model", "detector", "--frames", "1", "--steps", "2",
                   "--eval-frames", "1", "--precision", "bf16", "--out", tmp_path / "det.pt")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["model"] == "detector" and summary["frames"] > 0 and summary["bf16"]
    assert ("bf16_emulated" in r.stderr) is not native_bf16()  # told, where it costs ~10x
    assert 0 <= summary["fleet_test"]["map50"] <= 1
    r = swarmdrive("export", tmp_path / "det.pt", "--int8", "--calibration-frames", "1",
                   "--out", tmp_path / "det8.onnx")
    assert r.returncode == 0, r.stderr
    exported = json.loads(r.stdout)
    assert exported["precision"] == "int8" and exported["model_hash"] == summary["model_hash"]
    r = swarmdrive("infer", "--model", tmp_path / "det8.onnx", "sim:Town02/ClearNoon?n=3",
                   "--min-score", "0")
    assert r.returncode == 0, r.stderr
    assert all(json.loads(x)["path"].startswith("sim:Town02/ClearNoon")
               for x in r.stdout.splitlines())
    assert "mAP@0.5 " in r.stderr


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


@pytest.mark.slow
def test_corrupt_files_one_rule_for_train_export_and_infer(frames, trained, tmp_path):
    """The rest is used, one line names the count, the exit code says BAD_INPUT_FILE."""
    mixed = tmp_path / "mixed"
    (mixed / "images").mkdir(parents=True)
    (mixed / "labels").mkdir()
    for p in sorted((frames / "images").iterdir())[:3]:
        (mixed / "images" / p.name).write_bytes(p.read_bytes())
        label = frames / "labels" / (p.stem + ".txt")
        (mixed / "labels" / label.name).write_bytes(label.read_bytes())
    png = (mixed / "images").iterdir().__next__().read_bytes()
    (mixed / "images" / "zz.png").write_bytes(png[: len(png) // 2])  # truncated: OpenCV warns
    (mixed / "images" / "zz2.png").write_bytes(b"garbage")
    runs = {
        "infer": swarmdrive("infer", "--model", trained.onnx, mixed),
        "train": swarmdrive("train", "--source", mixed, "--steps", "3", "--eval-frames", "0",
                            "--out", tmp_path / "m.pt"),
        "export": swarmdrive("export", trained.checkpoint, "--calibration", mixed,
                             "--out", tmp_path / "m.onnx"),
    }
    for name, r in runs.items():
        assert_one_line_error(r, ExitCode.BAD_INPUT_FILE, "skipped 2", str(mixed))
        assert "WARN" not in r.stderr, (name, r.stderr)  # OpenCV's own lines stay quiet
        assert r.stdout.strip(), name  # ... and the work was done with the rest
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "m.onnx").is_file()


def test_unexpected_errors_are_one_line_and_traceback_only_with_debug(trained, monkeypatch,
                                                                       capsys, tmp_path):
    from agent.cli import main
    from models import runtime

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runtime.OnnxClassifier, "__init__", broken)
    assert main(["infer", "--model", str(trained.onnx), str(tmp_path)]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == ["swarmdrive: error: internal error, RuntimeError: boom (a bug: "
                                "please report it; --debug shows the traceback)"]
    assert main(["infer", "--debug", "--model", str(trained.onnx), str(tmp_path)]) == \
        ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err.splitlines()[-1]


def test_version_and_verbose_after_the_subcommand():
    r = swarmdrive("--version")
    assert r.returncode == 0 and r.stdout.startswith("swarmdrive 0.")
    from agent.cli import build_parser

    assert build_parser().parse_args(["infer", "-vv", "--model", "m", "x"]).verbose == 2
    assert build_parser().parse_args(["-v", "infer", "--model", "m", "x"]).verbose == 1


def test_help_shows_every_option_with_its_default():
    r = swarmdrive("sim", "--help")
    assert r.returncode == 0
    for flag, default in (("--vehicles", "8"), ("--rounds", "20"), ("--local-steps", "30"),
                          ("--density", "0.1"), ("--bits", "8"), ("--round-timeout", "120")):
        assert flag in r.stdout and f"(default: {default})" in r.stdout.split(flag, 1)[1]


@pytest.mark.slow
def test_ctrl_c_on_the_default_sim_exits_130_without_a_traceback(tmp_path):
    import signal

    p = subprocess.Popen([sys.executable, "-m", "agent", "sim", "--vehicles", "3", "--rounds",
                          "500", "--local-steps", "2", "--frames", "3", "--batch-size", "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    seen = []
    for line in p.stderr:  # wait for the event: the fleet is in its rounds
        seen.append(line)
        if line.startswith("round 1/"):
            break
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=60)
    assert p.returncode == ExitCode.INTERRUPTED, "".join(seen) + rest
    assert "Traceback" not in rest and "swarmdrive: interrupted" in rest


def test_closed_stdout_pipe_is_not_an_error(trained, tmp_path):
    import cv2

    many = tmp_path / "many"
    many.mkdir()
    cv2.imwrite(str(many / "0000.png"), trained.data.images[0])
    for i in range(1, 1000):  # ~150 kB of answers: more than a pipe holds
        (many / f"{i:04d}.png").write_bytes((many / "0000.png").read_bytes())
    p = subprocess.Popen([sys.executable, "-m", "agent", "infer", "--model", str(trained.onnx),
                          str(many)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()  # like `| head -1`
    rest = p.stderr.read() if p.stderr else ""
    assert p.wait(timeout=120) == 0, rest
    assert "Traceback" not in rest and "BrokenPipe" not in rest
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
    assert " accuracy 0." in r.stderr.split("round 2/2", 1)[1]  # progress with the accuracy
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




@pytest.mark.slow
def test_an_endless_camera_is_bounded_where_a_finite_source_is_needed(trained, tmp_path):
    r = swarmdrive("train", "--source", "sim:Town03/ClearNoon", "--max-frames", "12",
                   "--steps", "2", "--eval-frames", "0", "--out", tmp_path / "m.pt")
    assert r.returncode == 0, r.stderr
    assert "train: 12 frame(s) from sim:Town03/ClearNoon" in r.stderr
    r = swarmdrive("export", trained.checkpoint, "--calibration", "sim:Town03/ClearNoon",
                   "--max-frames", "12", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    assert "calibrate: 12 frame(s)" in r.stderr
