"""Which augmentations carry a detector from its own town and weather to the fleet's.

A vehicle sees one (town, weather); the fleet's model must work under every weather in every
town. This ablation trains FrameNet on the frames of one domain with each augmentation set
(models/detect_data.py) and scores it on the fleet-wide test set (every town under every
weather, drives never trained on), as ``benchmarks.generalisation --model detector`` does:

  none         no augmentation
  geometric    horizontal flip and 0.75-1.33x zoom
  photometric  light, tint, gamma, contrast, haze, noise and blur (the weather stand-ins)
  all          both: the default of every training run

Prints {"map50": {set: ...}, "per_weather_map50": {set: {...}}, "domain", "steps",
"train_frames", "test_frames"} as its last line. At the default budget (600 steps of 16
frames on 1,176 frames) the four trainings take about 36 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from benchmarks.common import log, setup_threads
from benchmarks.detection import per_family
from models.coco import coco_report
from models.detect_data import Augment
from models.detect_eval import predict
from models.detect_train import DETECTOR_TRAIN, train
from models.detector import DetConfig, FrameNet
from sim.datasets import domains_frames, fleet_test_frames
from sim.world import CLASSES

DOMAIN = ("Town01", "ClearNoon")  # a clear day: every other weather is a shift from it
STEPS = 600
FRAMES = 1176  # as the generalisation benchmark's one-domain runs
TEST_FRAMES_PER_DOMAIN = 12  # as benchmarks.detection: 588 frames

SETS = {
    "none": Augment.none(),
    "geometric": replace(Augment(), photometric=False),
    "photometric": replace(Augment.none(), photometric=True),
    "all": Augment(),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=STEPS,
                   help="training steps per model (default %(default)s)")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be at least 1")
    setup_threads()
    cfg = DetConfig()
    train_set = domains_frames([DOMAIN], 1, FRAMES, cfg.width, cfg.height)
    test = fleet_test_frames(0, TEST_FRAMES_PER_DOMAIN, cfg.width, cfg.height)
    log(f"{len(train_set)} frames of {'/'.join(DOMAIN)}; fleet-wide test set: {len(test)} "
        f"frames, {test.objects()} objects")
    map50, per_weather = {}, {}
    for name, aug in SETS.items():
        torch.manual_seed(0)
        model = FrameNet(cfg)
        result = train(model, train_set, replace(DETECTOR_TRAIN, steps=args.steps), aug)
        dets = predict(model, test.images)
        map50[name] = round(coco_report(dets, test.truths(), CLASSES).map50, 4)
        per_weather[name] = per_family(dets, test, 1)
        log(f"{name}: trained in {result.seconds:.0f} s, loss {result.final_loss:.3f}, "
            f"mAP@0.5 {map50[name]:.4f}")
    print(json.dumps({"map50": map50, "per_weather_map50": per_weather,
                      "domain": "/".join(DOMAIN), "steps": args.steps,
                      "train_frames": len(train_set), "test_frames": len(test)}))


if __name__ == "__main__":
    main()
