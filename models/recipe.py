"""Each model family's recipe for a vehicle's local training: batch and peak rate.

One place for what the daemon's config defaults to, what the simulator's fleets train at and
what the detector's benchmarks start from. Torch-free: the config reads it when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    batch_size: int  # samples per step
    lr: float  # the schedule's peak


RECIPES = {
    "detector": Recipe(batch_size=16, lr=4e-3),  # whole frames (models/detect_train.py)
    "classifier": Recipe(batch_size=64, lr=3e-3),  # crops
}
