"""Rendering speed of the simulator camera on one core.

Prints {"frames_per_s": median over runs, "width", "height", "runs": [...]} as its last line.
Each run drives 300 consecutive frames in one (town, weather) domain, cycling through
domains so that every town and weather is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import cv2

from sim.render import CameraConfig, renderer_for
from sim.world import all_domains


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--runs", type=int, default=len(all_domains()))
    args = p.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    cv2.setNumThreads(1)
    camera = CameraConfig(width=args.width, height=args.height)
    domains = all_domains()
    runs = []
    for r in range(args.runs):
        town, weather = domains[r % len(domains)]
        renderer = renderer_for(r, town, weather, camera)
        renderer.render(0)  # cached layers are built once per drive, not per frame
        t0 = time.perf_counter()
        for i in range(1, args.frames + 1):
            renderer.render(i)
        runs.append(args.frames / (time.perf_counter() - t0))
    print(json.dumps({"frames_per_s": round(statistics.median(runs), 1),
                      "width": args.width, "height": args.height,
                      "min_frames_per_s": round(min(runs), 1), "runs": len(runs)}))


if __name__ == "__main__":
    main()
