"""``swarmdrive train``: train a model on camera sources (the simulator's by default): the frame
detector, or the crop classifier.

Heavy imports (torch) live in ``run``: ``swarmdrive --help`` must not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from agent.commands.args import (
    UsageError,
    add_command,
    add_precision,
    check_output_file,
    int_range,
    non_negative_int,
    positive_int,
)

MAX_FRAMES = 5000  # per source: bounds an endless camera and the crops held in memory
DEFAULT_SOURCE = "sim:{town}/{weather}?seed={seed}&n={frames}&stride=5"
EVAL_SOURCE = "sim:*/*?seed={seed}&n={frames}&stride=5&split=test"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "train", "train the object-recognition model",
                    "Train the frame detector (or the crop classifier) on labelled frames: the "
                    "simulator's drives (every town under every weather unless --town/--weather "
                    "narrow it) or --source.")
    p.add_argument("--model", choices=("detector", "classifier"), default="classifier",
                   help="what to train: the frame detector, or the classifier of labelled crops")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.add_argument("--source", action="append", metavar="SPEC",
                   help="camera source instead of the sim drives (repeat for several): an image "
                        "folder with YOLO labels, or sim:TOWN/WEATHER?n=FRAMES")
    p.add_argument("--town", action="append", help="sim town (repeat; default: every town)")
    p.add_argument("--weather", action="append",
                   help="sim weather (repeat; default: every preset)")
    p.add_argument("--frames", type=positive_int, default=40,
                   help="sim frames per (town, weather) domain")
    p.add_argument("--max-frames", type=positive_int, default=MAX_FRAMES,
                   help="frames read from each --source at most (an endless camera stops here)")
    p.add_argument("--steps", type=positive_int,
                   help="optimiser steps (default: 4000 for the detector, 1200 for the classifier)")
    p.add_argument("--batch-size", type=int_range(1, 65536),
                   help="frames (detector, default 16) or crops (classifier, default 128) a step")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of data and weights")
    p.add_argument("--threads", type=int_range(1, 256), default=2, help="torch CPU threads")
    add_precision(p)
    p.add_argument("--eval-frames", type=non_negative_int, default=8,
                   help="frames per domain of the fleet-wide test set (0: skip evaluation)")
    p.set_defaults(run=run)


def training_sources(args: argparse.Namespace) -> list[str]:
    if args.source:
        if args.town or args.weather:
            raise UsageError("--town/--weather choose the sim drives; they do not apply to "
                             "--source")
        return list(args.source)
    return [DEFAULT_SOURCE.format(town=t, weather=w, seed=args.seed, frames=args.frames)
            for t in args.town or ["*"] for w in args.weather or ["*"]]


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out)
    sources = training_sources(args)
    if args.model == "detector":
        return train_detector(args, sources)
    import torch

    from agent.commands.sources import collect_crops
    from models.checkpoint import save_checkpoint
    from models.classes import CLASSES
    from models.evaluate import evaluate
    from models.net import CropNet, NetConfig
    from models.train import TrainConfig, train, use_bf16

    torch.set_num_threads(args.threads)
    config = NetConfig(n_classes=len(CLASSES))
    got = collect_crops(sources, len(CLASSES), config.input_size, args.max_frames, "train")
    data = got.crops
    print(f"training on {len(data)} crops from {got.frames} frames for {args.steps} steps",
          file=sys.stderr, flush=True)
    if len(data) < 200:
        print(f"swarmdrive: warning: {len(data)} crops are few; expect a weak model (train on "
              "more frames)", file=sys.stderr)
    torch.manual_seed(args.seed)
    model = CropNet(config)
    cfg = TrainConfig(steps=args.steps or 1200, batch_size=args.batch_size or 128, seed=args.seed,
                      bf16=use_bf16(args.precision))
    result = train(model, data, cfg, progress=lambda step, loss: print(
        f"step {step}/{cfg.steps} loss {loss:.4f}", file=sys.stderr, flush=True))
    summary: dict[str, object] = {"out": str(args.out), "crops": len(data),
                                  "steps": result.steps, "final_loss": round(result.final_loss, 5),
                                  "train_s": round(result.seconds, 1), "bf16": cfg.bf16}
    if args.eval_frames > 0:
        spec = EVAL_SOURCE.format(seed=args.seed, frames=args.eval_frames)
        test = collect_crops([spec], len(CLASSES), config.input_size, args.max_frames,
                             "evaluate").crops
        summary["fleet_test"] = evaluate(model, test, CLASSES).to_dict()
    summary["model_hash"] = save_checkpoint(
        args.out, model, CLASSES,
        meta={"train": asdict(cfg), "sources": sources})
    print(json.dumps(summary))
    return got.report_skipped()


def train_detector(args: argparse.Namespace, sources: list[str]) -> int:
    """Train FrameNet on whole labelled frames; evaluate by COCO mAP on the fleet's test drives."""
    import torch

    from agent.commands.sources import collect_frames
    from models.checkpoint import save_checkpoint
    from models.classes import CLASSES
    from models.detect_eval import evaluate
    from models.detect_train import DETECTOR_TRAIN, train
    from models.detector import DetConfig, FrameNet
    from models.train import use_bf16

    torch.set_num_threads(args.threads)
    config = DetConfig(n_classes=len(CLASSES))
    size = (config.width, config.height)
    got = collect_frames(sources, len(CLASSES), size, args.max_frames, "train")
    data = got.frames
    cfg = replace(DETECTOR_TRAIN, steps=args.steps or DETECTOR_TRAIN.steps,
                  batch_size=args.batch_size or DETECTOR_TRAIN.batch_size, seed=args.seed,
                  bf16=use_bf16(args.precision))
    print(f"training the detector on {len(data)} frames ({data.objects()} objects) for "
          f"{cfg.steps} steps", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    model = FrameNet(config)
    result = train(model, data, cfg, progress=lambda step, loss: print(
        f"step {step}/{cfg.steps} loss {loss:.4f}", file=sys.stderr, flush=True))
    summary: dict[str, object] = {"out": str(args.out), "model": "detector",
                                  "frames": len(data), "objects": data.objects(),
                                  "steps": result.steps, "final_loss": round(result.final_loss, 5),
                                  "train_s": round(result.seconds, 1), "bf16": cfg.bf16}
    if args.eval_frames > 0:
        spec = EVAL_SOURCE.format(seed=args.seed, frames=args.eval_frames)
        test = collect_frames([spec], len(CLASSES), size, args.max_frames, "evaluate").frames
        summary["fleet_test"] = evaluate(model, test, CLASSES).to_dict()
    summary["model_hash"] = save_checkpoint(args.out, model, CLASSES,
                                            meta={"train": asdict(cfg), "sources": sources})
    print(json.dumps(summary))
    return got.report_skipped()
