"""Byzantine vehicles for the simulator: what a compromised vehicle sends instead of its delta.

Attackers see every honest delta of the round (the strongest threat model) and send a delta of
the same shape through the same codec, so only the merge rule stands between them and the model.
Two attacks go beyond the delta (round-v2.md): ``inflate`` sends the sign flip claiming
2**32 - 1 training samples, to buy weight; ``committer`` sends honest deltas but, in its
committer slot, commits a junk model, which the honest majority never attests.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

ATTACKS = ("sign_flip", "noise", "alie", "inflate", "committer")
INFLATED_SAMPLES = 2**32 - 1  # the most a u32 sample count can claim
SIGN_FLIP_SCALE = 5.0  # -5x its own delta: under a plain mean, 2 of 8 reverse the fleet's step
NOISE_SCALE = 10.0  # Gaussian noise with 10x the norm of the attacker's own delta


def alie_z(n: int, f: int) -> float:
    """"A little is enough" (Baruch et al. 2019): the largest shift, in standard deviations,
    that still keeps the attackers inside the majority that robust rules trust."""
    s = n // 2 + 1 - f
    return NormalDist().inv_cdf((n - s) / n)


def attack(kind: str, own: np.ndarray, honest: Sequence[np.ndarray], n: int, f: int,
           rng: np.random.Generator) -> np.ndarray:
    """The delta an attacker sends; ``own`` is what it would have sent honestly."""
    if kind in ("sign_flip", "inflate"):
        return (-SIGN_FLIP_SCALE * own).astype(np.float32)
    if kind == "noise":
        noise = rng.standard_normal(own.shape).astype(np.float32)
        return noise * np.float32(NOISE_SCALE * np.linalg.norm(own) / np.linalg.norm(noise))
    if kind == "alie":
        stack = np.stack(honest)
        return (stack.mean(axis=0) - alie_z(n, f) * stack.std(axis=0)).astype(np.float32)
    if kind == "committer":
        return own  # its harm is in the commit (sim.fleet.expired_commits), not in the delta
    raise ValueError(f"unknown attack {kind!r}; known: {', '.join(ATTACKS)}")


def claimed_samples(kind: str, samples: int) -> int:
    """The sample count an attacker announces for its delta."""
    return INFLATED_SAMPLES if kind == "inflate" else samples
