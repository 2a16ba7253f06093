"""``swarmdrive export``: a checkpoint to ONNX (fp32, or int8 calibrated on local frames)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx

from agent.camera.source import CameraError, open_source
from agent.commands.args import positive_int
from models.checkpoint import load_checkpoint
from models.data import crops_from_frames
from models.evaluate import predict
from models.onnx_export import export, to_onnx
from models.quantize import quantize_int8
from models.runtime import OnnxClassifier
from sim.datasets import domains_crops
from sim.world import all_domains

CALIBRATION_CROPS = 512  # enough for stable activation ranges; more only slows the export


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a checkpoint to ONNX")
    p.add_argument("model", type=Path, help="checkpoint written by 'swarmdrive train'")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--int8", action="store_true", help="int8 static quantisation")
    p.add_argument("--calibration", help="labelled frames for calibration and parity checks: "
                   "an image folder with YOLO labels or sim:TOWN/WEATHER (default: a few sim "
                   "frames of every domain)")
    p.add_argument("--calibration-frames", type=positive_int, default=2,
                   help="sim frames per domain when --calibration is not given")
    p.set_defaults(run=run)


def calibration_crops(args: argparse.Namespace, size: int, n_classes: int) -> np.ndarray:
    if args.calibration:
        with open_source(args.calibration, n_classes) as src:
            images = crops_from_frames(src, size).images
        if len(images) == 0:
            raise CameraError(f"{args.calibration}: no labelled boxes to calibrate on")
    else:
        images = domains_crops(all_domains(), 7, args.calibration_frames, size).images
    rng = np.random.default_rng(0)
    if len(images) > CALIBRATION_CROPS:
        images = images[np.sort(rng.choice(len(images), CALIBRATION_CROPS, replace=False))]
    return images


def run(args: argparse.Namespace) -> int:
    model, ckpt = load_checkpoint(args.model)
    classes = tuple(ckpt["classes"])
    images = calibration_crops(args, model.config.input_size, len(classes))
    summary: dict[str, object] = {"out": str(args.out), "model_hash": ckpt["model_hash"],
                                  "calibration_crops": len(images)}
    if args.int8:
        fp32 = to_onnx(model, classes)
        quantize_int8(fp32, images, args.out)
        q = OnnxClassifier(args.out)
        agree = float(np.mean(q.logits(images).argmax(1) == predict(model, images).argmax(1)))
        summary.update(precision="int8", agreement_with_fp32=round(agree, 4))
    else:
        diff = export(model, classes, args.out, images)
        summary.update(precision="fp32", max_abs_logit_diff=diff)
    onnx.checker.check_model(str(args.out))
    summary["bytes"] = args.out.stat().st_size
    print(json.dumps(summary))
    if args.int8 and summary["agreement_with_fp32"] < 0.95:  # type: ignore[operator]
        print("swarmdrive: warning: int8 model disagrees with fp32 on more than 5% of the "
              "calibration crops", file=sys.stderr)
    return 0
