"""``swarmdrive render``: write simulator frames as PNG images with YOLO labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from agent.camera.yolo import format_labels
from agent.commands.args import positive_int
from models.atomic import atomic_write_bytes
from sim.render import CameraConfig
from sim.sensor import SyntheticCamera
from sim.world import CLASSES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("render", help="render simulator frames to PNG + YOLO labels")
    p.add_argument("--town", required=True, help="e.g. Town01 .. Town07, Town10")
    p.add_argument("--weather", required=True, help="e.g. ClearNoon, HardRainNoon, ClearNight")
    p.add_argument("-n", "--frames", type=positive_int, default=100, help="number of frames")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="index of the first frame")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fov", type=float, default=90.0, help="horizontal field of view, degrees")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    camera = CameraConfig(width=args.width, height=args.height, fov_deg=args.fov)
    cam = SyntheticCamera(args.town, args.weather, seed=args.seed, start=args.start,
                          n=args.frames, camera=camera)
    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "classes.txt", "".join(c + "\n" for c in CLASSES).encode())
    boxes = 0
    for i, frame in enumerate(cam, start=args.start):
        ok, png = cv2.imencode(".png", frame.image)
        assert ok, "PNG encoding of a valid uint8 image cannot fail"
        atomic_write_bytes(out / "images" / f"{i:06d}.png", png.tobytes())
        text = format_labels(frame.boxes, frame.labels, camera.width, camera.height)
        atomic_write_bytes(out / "labels" / f"{i:06d}.txt", text.encode())
        boxes += len(frame.labels)
    print(json.dumps({"out": str(out), "frames": args.frames, "boxes": boxes}))
    return 0
