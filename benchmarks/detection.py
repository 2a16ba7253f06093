"""The detector on the fleet-wide test set: COCO mAP (pycocotools), ONNX fp32 and int8, latency.

Trains FrameNet on frames of every domain (every town under every weather, training drives)
with the default augmentations, then on the fleet-wide test set (test drives of every domain):
  map50, map50_95, small_map50, per_class_ap50   from torch, by pycocotools
  per_weather_map50, per_town_map50               the same, per domain family
  int8_map50                                      the int8 ONNX model (calibrated on training
                                                  frames) through ONNX Runtime and numpy decoding
  ort_fp32_ms_p50, ort_int8_ms_p50                one 320x240 frame per call on one thread,
                                                  resize + network + decoding (what the server
                                                  does), median over runs of the median call
  cpu                                             the CPU's model; AVX-512 and VNNI (int8 is
                                                  faster than fp32 only with VNNI)
Objects under 12 rows tall, or mostly hidden, are ignored (models/detect_data.py).

Prints {"map50", "map50_95", "per_class_ap50", "params", "ort_fp32_ms_p50", "ort_int8_ms_p50",
"int8_map50", ...} as its last line.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import cpu, log, setup_threads
from models.coco import coco_report
from models.detect_data import FrameSet
from models.detect_decode import Detections
from models.detect_eval import evaluate
from models.detect_train import DETECTOR_TRAIN, train
from models.detector import LIGHT, DetConfig, FrameNet
from models.onnx_export import export, to_onnx
from models.quantize import quantize_int8
from models.runtime import OnnxDetector
from sim.datasets import domains_frames, fleet_test_frames
from sim.world import CLASSES, all_domains

TRAIN_FRAMES_PER_DOMAIN = 120  # 5,880 frames of 49 domains
# Longer than `swarmdrive train`'s 4,000: at 4,000 steps on half the frames the loss was still
# falling (mAP@0.5 0.752); about 110 minutes on two cores.
TRAIN_STEPS = 7000
TEST_FRAMES_PER_DOMAIN = 12  # 588 frames, as the crop benchmarks' fleet-wide test set
CALIBRATION_FRAMES = 64
CALLS, RUNS = 300, 5


def latency_ms(det: OnnxDetector, frames: np.ndarray) -> float:
    """Median over RUNS of the median call: one frame in, decoded objects out."""
    for i in range(30):
        det.detect(frames[i % len(frames)])
    medians = []
    for _ in range(RUNS):
        times = []
        for i in range(CALLS):
            t0 = time.perf_counter()
            det.detect(frames[i % len(frames)])
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times) * 1e3)
    return statistics.median(medians)


def domain_of(origin: str) -> tuple[str, str]:
    m = re.match(r"sim:([^/]+)/([^?#]+)", origin)
    assert m, f"not a simulator frame: {origin}"
    return m.group(1), m.group(2)


def per_family(dets: list[Detections], test: FrameSet, part: int) -> dict[str, float]:
    """mAP@0.5 per town (part 0) or per weather (part 1)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, origin in enumerate(test.origins):
        groups[domain_of(origin)[part]].append(i)
    truths = test.truths()
    return {name: round(coco_report([dets[i] for i in ix], [truths[i] for i in ix],
                                    CLASSES).map50, 4)
            for name, ix in sorted(groups.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=TRAIN_STEPS)
    p.add_argument("--frames-per-domain", type=int, default=TRAIN_FRAMES_PER_DOMAIN)
    p.add_argument("--save", type=Path, help="also save the trained weights here")
    p.add_argument("--load", type=Path,
                   help="weights saved by --save: skip training, measure export and latency")
    p.add_argument("--light", action="store_true",
                   help="FrameNet with depthwise-separable blocks (models.detector.LIGHT)")
    args = p.parse_args()
    if args.load and not args.load.is_file():
        p.error(f"--load {args.load}: no such file")
    if args.save and not args.save.parent.is_dir():
        p.error(f"--save {args.save}: its folder does not exist")
    setup_threads()
    cfg = LIGHT if args.light else DetConfig()
    train_set = domains_frames(all_domains(), 1, args.frames_per_domain, cfg.width, cfg.height)
    test = fleet_test_frames(0, TEST_FRAMES_PER_DOMAIN, cfg.width, cfg.height)
    log(f"{len(train_set)} training frames ({train_set.objects()} objects), "
        f"{len(test)} test frames ({test.objects()} objects)")
    torch.manual_seed(0)
    model = FrameNet(cfg)
    train_s = 0.0
    if args.load:
        model.load_state_dict(torch.load(args.load, weights_only=True))
    else:
        tcfg = replace(DETECTOR_TRAIN, steps=args.steps)
        result = train(model, train_set, tcfg,
                       progress=lambda s, loss: log(f"step {s}/{args.steps} loss {loss:.3f}"))
        train_s = result.seconds
        log(f"trained in {train_s:.0f} s")
    if args.save:
        torch.save(model.state_dict(), args.save)
    report = evaluate(model, test, CLASSES)
    log(f"torch: {report.to_dict()}")
    with tempfile.TemporaryDirectory(prefix="swarmdrive-detection-") as tmp:
        fp32_path, int8_path = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        parity = export(model, CLASSES, fp32_path, test.images[:8])
        quantize_int8(to_onnx(model, CLASSES), train_set.images[:CALIBRATION_FRAMES], int8_path)
        fp32, int8 = OnnxDetector(fp32_path), OnnxDetector(int8_path)
        int8_dets = [int8.detect(img) for img in test.images]
        int8_report = coco_report(int8_dets, test.truths(), CLASSES)
        fp32_dets = [fp32.detect(img) for img in test.images]
        fp32_ms, int8_ms = latency_ms(fp32, test.images), latency_ms(int8, test.images)
    out = {
        "map50": round(report.map50, 4),
        "map50_95": round(report.map50_95, 4),
        "small_map50": report.small_map50 and round(report.small_map50, 4),
        "per_class_ap50": {k: v and round(v, 4) for k, v in report.per_class_ap50.items()},
        "per_weather_map50": per_family(fp32_dets, test, 1),
        "per_town_map50": per_family(fp32_dets, test, 0),
        "params": model.num_parameters(),
        "light": args.light,
        "ort_fp32_ms_p50": round(fp32_ms, 3),
        "ort_int8_ms_p50": round(int8_ms, 3),
        "cpu": cpu(),
        "int8_map50": round(int8_report.map50, 4),
        "max_abs_output_diff": parity,
        "train_s": round(train_s, 1),
        "steps": args.steps,
        "test_frames": len(test),
        "test_objects": test.objects(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
