"""Each model family's recipe for a vehicle's local training in a fleet: batch and peak rate.

One place for what the daemon's config defaults to and what the simulator's fleets train at.
Torch-free: the config reads it when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    batch_size: int  # samples per step
    lr: float  # the schedule's peak


RECIPES = {
    # Whole frames. Twice the rate one trainer alone uses (models/detect_train.py): a merge
    # averages the vehicles' AdamW steps, whose noise is independent, so the fleet's step is
    # shorter than each vehicle's. 8 vehicles, 300 steps each (docs/detector.md): mAP@0.5 0.338
    # at 4e-3, 0.386 at 8e-3, 0.376 at 1.13e-2.
    "detector": Recipe(batch_size=16, lr=8e-3),
    "classifier": Recipe(batch_size=64, lr=3e-3),  # crops
}
