"""``swarmdrive export``: a checkpoint to ONNX (fp32, or int8 calibrated on local frames).

Heavy imports (torch, onnx) live in ``run``: ``swarmdrive --help`` must not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import add_command, check_output_file, positive_int

if TYPE_CHECKING:
    from models.detector import FrameNet

CALIBRATION_CROPS = 512  # enough for stable activation ranges; more only slows the export
CALIBRATION_FRAMES = 64  # the detector's: whole frames hold ~4 objects and much background
MAX_FRAMES = 1000  # per calibration source: bounds an endless camera
DEFAULT_CALIBRATION = "sim:*/*?seed=7&n={frames}&stride=5"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "export", "export a checkpoint to ONNX",
                    "Export a checkpoint to ONNX, parity-checked against torch (fp32) or "
                    "calibrated on labelled frames (int8).")
    p.add_argument("model", type=Path, help="checkpoint written by 'swarmdrive train'")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--int8", action="store_true", help="int8 static quantisation")
    p.add_argument("--calibration", metavar="SPEC",
                   help="labelled frames for calibration and parity checks: an image folder "
                        "with YOLO labels or sim:TOWN/WEATHER?n=FRAMES (default: "
                        "--calibration-frames sim frames of every domain)")
    p.add_argument("--calibration-frames", type=positive_int, default=2,
                   help="sim frames per domain when --calibration is not given")
    p.add_argument("--max-frames", type=positive_int, default=MAX_FRAMES,
                   help="frames read from --calibration at most (an endless camera stops here)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out)
    import numpy as np
    import onnx

    from agent.commands.sources import collect_crops
    from models.checkpoint import load_checkpoint
    from models.detector import FrameNet
    from models.evaluate import predict
    from models.onnx_export import export, to_onnx
    from models.quantize import quantize_int8
    from models.runtime import OnnxClassifier

    model, ckpt = load_checkpoint(args.model)
    classes = tuple(ckpt["classes"])
    spec = args.calibration or DEFAULT_CALIBRATION.format(frames=args.calibration_frames)
    if isinstance(model, FrameNet):
        return export_detector(args, model, classes, spec, ckpt["model_hash"])
    got = collect_crops([spec], len(classes), model.config.input_size, args.max_frames,
                        "calibrate")
    images = got.crops.images
    if len(images) > CALIBRATION_CROPS:
        rng = np.random.default_rng(0)
        images = images[np.sort(rng.choice(len(images), CALIBRATION_CROPS, replace=False))]
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
    return got.report_skipped()


def export_detector(args: argparse.Namespace, model: FrameNet, classes: tuple[str, ...],
                    spec: str, model_hash: str) -> int:
    """The detector's export: calibrated on whole frames; int8 scored against fp32 by COCO AP."""
    import onnx

    from agent.commands.sources import collect_frames
    from models.coco import coco_report
    from models.detect_eval import evaluate
    from models.onnx_export import export, to_onnx
    from models.quantize import quantize_int8
    from models.runtime import OnnxDetector

    cfg = model.config
    got = collect_frames([spec], len(classes), (cfg.width, cfg.height), args.max_frames,
                         "calibrate")
    frames = got.frames.subset(range(min(len(got.frames), CALIBRATION_FRAMES)))
    summary: dict[str, object] = {"out": str(args.out), "model_hash": model_hash,
                                  "calibration_frames": len(frames)}
    worse = False
    if args.int8:
        quantize_int8(to_onnx(model, classes), frames.images, args.out)
        q = OnnxDetector(args.out)
        fp32_map = evaluate(model, got.frames, classes).map50
        int8_map = coco_report([q.detect(img) for img in got.frames.images],
                               got.frames.truths(), classes).map50
        summary.update(precision="int8", calibration_map50_fp32=round(fp32_map, 4),
                       calibration_map50_int8=round(int8_map, 4))
        worse = int8_map < fp32_map - 0.02
    else:
        diff = export(model, classes, args.out, frames.images[:16])
        summary.update(precision="fp32", max_abs_output_diff=diff)
    onnx.checker.check_model(str(args.out))
    summary["bytes"] = args.out.stat().st_size
    print(json.dumps(summary))
    if worse:
        print("swarmdrive: warning: the int8 model's mAP@0.5 is more than 2 points below fp32 "
              "on the calibration frames", file=sys.stderr)
    return got.report_skipped()
