"""Merge one round's payloads into the next model: the step every vehicle must get bit-equal.

The committer runs it to produce the model it commits; every other vehicle runs it on exactly
the committed set to check the committer. The in-memory simulator uses it too, so both
transports compute the same model from the same payloads.
"""

from __future__ import annotations

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
    """``base`` plus the merge of (payload, samples) pairs in the order given: the canonical
    order is the commitment's (senders ascending), so the caller passes them that way.
    Raises ``CodecError`` or ``MergeError``."""
    result = merge([Contribution(decode(p, layout).values, samples) for p, samples in payloads],
                   cfg)
    model = base + result.delta
    return Combined(model, bytes.fromhex(flat_hash(layout, model)), result)
