"""Merge one round's payloads into the next model: the step every vehicle must get bit-equal.

The committer runs it to produce the model it commits; every other vehicle runs it on exactly
the committed set to check the committer. The in-memory simulator uses it too, so both
transports compute the same model from the same payloads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.codec import decode
from models.layout import ModelLayout, flat_hash
from models.merge import Contribution, MergeConfig, MergeResult, merge


@dataclass(frozen=True)
class Combined:
    model: np.ndarray
    model_hash: bytes
    merge: MergeResult


def combine(base: np.ndarray, payloads: Sequence[tuple[bytes, int]], layout: ModelLayout,
            cfg: MergeConfig) -> Combined:
    """``base`` plus the merge of (payload, samples) pairs, taken in canonical order (ascending
    payload sha256) whatever order they come in. Raises ``CodecError`` or ``MergeError``."""
    ordered = sorted(payloads, key=lambda ps: hashlib.sha256(ps[0]).digest())
    result = merge([Contribution(decode(p, layout).values, samples) for p, samples in ordered],
                   cfg)
    model = base + result.delta
    return Combined(model, bytes.fromhex(flat_hash(layout, model)), result)
