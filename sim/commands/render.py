"""``swarmdrive render``: write simulator frames as PNG images with YOLO labels."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from agent.commands.args import (
    OutputPathError,
    add_command,
    check_output_dir,
    float_range,
    int_range,
    non_negative_int,
)

MAX_FRAMES = 1_000_000


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "render", "render simulator frames to PNG + YOLO labels",
                    "Drive one route of the simulator and write its camera frames as PNG "
                    "images (images/), YOLO labels (labels/) and classes.txt.")
    p.add_argument("--town", required=True, help="Town01 .. Town07, Town10")
    p.add_argument("--weather", required=True, help="e.g. ClearNoon, HardRainNoon, ClearNight")
    p.add_argument("-n", "--frames", type=int_range(1, MAX_FRAMES), default=100,
                   help="number of frames")
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    p.add_argument("--force", action="store_true",
                   help="replace the images and labels of an earlier render in --out")
    p.add_argument("--seed", type=non_negative_int, default=0, help="which route to drive")
    p.add_argument("--start", type=non_negative_int, default=0, help="index of the first frame")
    p.add_argument("--width", type=int_range(16, 4096), default=320, help="pixels")
    p.add_argument("--height", type=int_range(16, 4096), default=240, help="pixels")
    p.add_argument("--fov", type=float_range(10.0, 170.0), default=90.0,
                   help="horizontal field of view, degrees")
    p.set_defaults(run=run)


def prepare(out: Path, force: bool) -> None:
    """A fresh images/ and labels/ in ``out``: an earlier render is never silently mixed in."""
    check_output_dir(out)
    earlier = [d for d in (out / "images", out / "labels") if d.is_dir() and any(d.iterdir())]
    if earlier and not force:
        raise OutputPathError(f"--out {out}: holds an earlier render; choose an empty folder or "
                              "pass --force to replace it")
    for d in earlier:
        shutil.rmtree(d)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace) -> int:
    import cv2

    from agent.camera.yolo import format_labels
    from models.atomic import atomic_write_bytes
    from models.classes import CLASSES
    from sim.render import CameraConfig
    from sim.sensor import SyntheticCamera

    camera = CameraConfig(width=args.width, height=args.height, fov_deg=args.fov)
    cam = SyntheticCamera(args.town, args.weather, seed=args.seed, start=args.start,
                          n=args.frames, camera=camera)
    out: Path = args.out
    prepare(out, args.force)
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
