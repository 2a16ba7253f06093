"""Why a fleet must learn together: one town/weather does not generalise to the fleet.

Trains a model with the same budget (steps, batch, number of frames) on (a) frames from one
(town, weather) domain and (b) the same number of frames spread over every domain, and scores
both on the same fleet-wide test set (every town under every weather, drives never trained on).
(a) is repeated for several single domains; the one-domain score is their mean.

`--model classifier` (default): CropNet on crops, scored by accuracy. Prints
{"one_domain_acc", "all_domains_acc", "gap_points", "per_domain": {...}} last.

`--model detector`: FrameNet on whole frames, scored by COCO mAP@0.5 (pycocotools) on the
detection benchmark's fleet-wide test set. Prints {"one_domain_map50", "all_domains_map50",
"gap_points", "per_domain": {...}, "steps", "train_frames"} last. Its default budget (600
steps of 16 frames, 1,176 frames) is a twelfth of `benchmarks.detection`'s, so that the four
trainings take about 40 minutes on two cores; the gap is the point, not the absolute mAP.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from benchmarks.common import (
    all_domains_data,
    fleet_test,
    log,
    one_domain_data,
    setup_threads,
    train_model,
)
from models.detect_eval import evaluate as evaluate_detector
from models.detect_train import DETECTOR_TRAIN
from models.detect_train import train as train_detector
from models.detector import DetConfig, FrameNet
from models.evaluate import evaluate
from sim.datasets import domains_frames, fleet_test_frames
from sim.world import CLASSES, all_domains

SINGLE_DOMAINS = [("Town01", "ClearNoon"), ("Town10", "CloudyNoon"), ("Town04", "ClearSunset")]
DETECTOR_STEPS = 600
DETECTOR_FRAMES_PER_DOMAIN = 24  # 1,176 frames over 49 domains, or 1,176 of one domain
DETECTOR_TEST_FRAMES_PER_DOMAIN = 12  # as benchmarks.detection: 588 frames


def classifier() -> None:
    test = fleet_test()
    log(f"fleet-wide test set: {len(test)} crops")
    all_acc = evaluate(train_model(all_domains_data()), test, CLASSES).accuracy
    log(f"all domains: {all_acc:.4f}")
    per_domain = {}
    for town, weather in SINGLE_DOMAINS:
        acc = evaluate(train_model(one_domain_data(town, weather)), test, CLASSES).accuracy
        per_domain[f"{town}/{weather}"] = round(acc, 4)
        log(f"{town}/{weather}: {acc:.4f}")
    one_acc = statistics.mean(per_domain.values())
    print(json.dumps({"one_domain_acc": round(one_acc, 4), "all_domains_acc": round(all_acc, 4),
                      "gap_points": round(100 * (all_acc - one_acc), 1),
                      "per_domain": per_domain, "test_crops": len(test)}))


def detector(steps: int) -> None:
    cfg = DetConfig()
    test = fleet_test_frames(0, DETECTOR_TEST_FRAMES_PER_DOMAIN, cfg.width, cfg.height)
    log(f"fleet-wide test set: {len(test)} frames, {test.objects()} objects")
    domains = all_domains()
    n_frames = DETECTOR_FRAMES_PER_DOMAIN * len(domains)
    tcfg = replace(DETECTOR_TRAIN, steps=steps)

    def score(domains: list[tuple[str, str]], per_domain: int) -> float:
        data = domains_frames(domains, 1, per_domain, cfg.width, cfg.height)
        torch.manual_seed(0)
        model = FrameNet(cfg)
        result = train_detector(model, data, tcfg)
        map50 = evaluate_detector(model, test, CLASSES).map50
        log(f"{len(domains)} domain(s), {len(data)} frames: trained in {result.seconds:.0f} s, "
            f"loss {result.final_loss:.3f}, mAP@0.5 {map50:.4f}")
        return map50

    all_map = score(domains, DETECTOR_FRAMES_PER_DOMAIN)
    per_domain = {f"{t}/{w}": round(score([(t, w)], n_frames), 4) for t, w in SINGLE_DOMAINS}
    one_map = statistics.mean(per_domain.values())
    print(json.dumps({"one_domain_map50": round(one_map, 4),
                      "all_domains_map50": round(all_map, 4),
                      "gap_points": round(100 * (all_map - one_map), 1),
                      "per_domain": per_domain, "steps": steps, "train_frames": n_frames,
                      "test_frames": len(test)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("classifier", "detector"), default="classifier")
    p.add_argument("--steps", type=int, default=DETECTOR_STEPS,
                   help="detector training steps per model (default %(default)s)")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be at least 1")
    setup_threads()
    if args.model == "detector":
        detector(args.steps)
    else:
        classifier()


if __name__ == "__main__":
    main()
