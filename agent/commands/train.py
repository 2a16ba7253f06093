"""``swarmdrive train``: train a crop classifier on simulator drives or a camera source."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from agent.camera.source import CameraError, open_source
from agent.commands.args import positive_int
from models.checkpoint import save_checkpoint
from models.data import CropSet, crops_from_frames
from models.evaluate import evaluate
from models.net import CropNet, NetConfig
from models.train import TrainConfig, train
from sim.datasets import domains_crops, fleet_test_set
from sim.world import CLASSES, TOWNS, WEATHERS, get_town, get_weather


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train the object-recognition model")
    p.add_argument("--source", help="camera source instead of the sim: an image folder with "
                   "YOLO labels, or sim:TOWN/WEATHER")
    p.add_argument("--town", action="append", help="sim town (repeat; default: all towns)")
    p.add_argument("--weather", action="append",
                   help="sim weather (repeat; default: all presets)")
    p.add_argument("--frames", type=positive_int, default=40,
                   help="sim frames per (town, weather) domain")
    p.add_argument("--steps", type=positive_int, default=1200)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--eval-frames", type=int, default=8,
                   help="frames per domain of the fleet-wide test set (0: skip evaluation)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.set_defaults(run=run)


def load_data(args: argparse.Namespace, size: int) -> CropSet:
    if args.source:
        with open_source(args.source, len(CLASSES)) as src:
            data = crops_from_frames(src, size)
            stats = src.statistics()
        if stats.skipped:
            print(f"swarmdrive: skipped {stats.skipped} unreadable file(s) in {args.source}",
                  file=sys.stderr)
        if len(data) == 0:
            raise CameraError(f"{args.source}: no labelled boxes to train on")
        return data
    towns = [get_town(t).name for t in args.town or TOWNS]
    weathers = [get_weather(w).name for w in args.weather or WEATHERS]
    return domains_crops(list(itertools.product(towns, weathers)), args.seed, args.frames, size)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = NetConfig(n_classes=len(CLASSES))
    data = load_data(args, config.input_size)
    print(f"training on {len(data)} crops for {args.steps} steps", file=sys.stderr)
    torch.manual_seed(args.seed)
    model = CropNet(config)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    result = train(model, data, cfg, progress=lambda step, loss: print(
        f"step {step}/{cfg.steps} loss {loss:.4f}", file=sys.stderr))
    summary: dict[str, object] = {"out": str(args.out), "crops": len(data),
                                  "steps": result.steps, "final_loss": round(result.final_loss, 5),
                                  "train_s": round(result.seconds, 1)}
    if args.eval_frames > 0:
        test = fleet_test_set(args.seed, args.eval_frames, config.input_size)
        rep = evaluate(model, test, CLASSES)
        summary["fleet_test"] = rep.to_dict()
    summary["model_hash"] = save_checkpoint(args.out, model, CLASSES,
                                            meta={"train": asdict(cfg), "source": args.source})
    print(json.dumps(summary))
    return 0
