"""Start-up stays light: help never loads the heavy stacks, and infer never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


def probe(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], dict[str, bool]]:
    r = subprocess.run([sys.executable, "-m", "benchmarks.startup_probe", *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("startup-probe "), r.stderr
    return r, json.loads(last.split(" ", 1)[1])


def test_help_loads_no_heavy_library():
    for args in (["--help"], ["infer", "--help"], ["chain", "status", "--help"],
                 ["sim", "--help"], ["train", "--help"]):
        r, loaded = probe(*args)
        assert r.returncode == 0 and "usage:" in r.stdout, r.stderr
        assert not any(loaded.values()), (args, loaded)


def test_infer_on_one_image_never_imports_torch(trained, tmp_path):
    image = tmp_path / "crop.png"
    cv2.imwrite(str(image), trained.data.images[0])
    r, loaded = probe("infer", "--model", trained.onnx, image)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["class"] in ("car", "truck", "bus", "motorcycle", "bicycle",
                                             "pedestrian", "traffic_light", "stop_sign")
    assert loaded["torch"] is False


def test_infer_leaves_no_profiler_dump(trained, tmp_path):
    image = tmp_path / "crop.png"
    cv2.imwrite(str(image), trained.data.images[0])
    r = subprocess.run([sys.executable, "-m", "agent", "infer", "--model", str(trained.onnx),
                        str(image)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.glob("onnxruntime_profile*")) == []
