"""Start-up cost of the command line: help texts, and inference on one image without torch.

Prints {"help_s", "infer_help_s", "chain_status_help_s", "infer_one_image_s",
"infer_imports_torch"}: medians of --runs fresh processes each. Target: the help figures
under 1 s, and infer never imports torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from models.classes import CLASSES
from models.net import CropNet, NetConfig
from models.onnx_export import export


def timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "benchmarks.startup_probe", *args],
                       capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, r


def median_s(args: list[str], runs: int) -> float:
    return round(statistics.median(timed(args)[0] for _ in range(runs)), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model, size = CropNet(NetConfig()), NetConfig().input_size
        crops = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), np.uint8)
        onnx_path, image = Path(tmp) / "m.onnx", Path(tmp) / "crop.png"
        export(model, CLASSES, onnx_path, crops)
        cv2.imwrite(str(image), crops[0])
        infer = ["infer", "--model", str(onnx_path), str(image)]
        _, probe = timed(infer)
        assert probe.returncode == 0, probe.stderr
        loaded = json.loads(probe.stderr.strip().splitlines()[-1].split(" ", 1)[1])
        result = {
            "help_s": median_s(["--help"], args.runs),
            "infer_help_s": median_s(["infer", "--help"], args.runs),
            "chain_status_help_s": median_s(["chain", "status", "--help"], args.runs),
            "infer_one_image_s": median_s(infer, args.runs),
            "infer_imports_torch": loaded["torch"],
            "runs": args.runs,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
