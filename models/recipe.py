"""Each model family's recipe: batch and peak rates, in a fleet and for one trainer alone.

One place for what the daemon's config defaults to, what the simulator's fleets train at and
what one trainer alone (`swarmdrive train`, the benchmarks' baselines) trains at. Torch-free:
the config reads it when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    batch_size: int  # samples per step
    lr: float  # the schedule's peak for a vehicle in a fleet
    solo_lr: float  # the peak for one trainer alone: central, or a vehicle that never merges


RECIPES = {
    # Whole frames. A fleet trains at twice one trainer's rate: a merge averages the vehicles'
    # AdamW steps, whose noise is independent, so the fleet's step is shorter than each
    # vehicle's (docs/detector.md, "Why a vehicle in a fleet trains at twice...").
    "detector": Recipe(batch_size=16, lr=8e-3, solo_lr=4e-3),
    "classifier": Recipe(batch_size=64, lr=3e-3, solo_lr=3e-3),  # crops
}
