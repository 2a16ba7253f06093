"""Handing a final model to the inference service: export to ONNX, check parity with torch on
the vehicle's own samples, score it on the held-out buffer, install it atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.serve import installed
from models.classes import CLASSES
from models.errors import ExportError
from models.family import Data, ModelFamily
from models.layout import ModelLayout
from models.onnx_export import PARITY_TOLERANCE, max_logit_diff, to_onnx

PARITY_SAMPLES = 16  # crops or frames run through torch and ONNX Runtime


@dataclass(frozen=True)
class Published:
    entry: installed.Installed
    parity: float  # max |torch - ONNX Runtime| output, relative
    score: float | None  # the family's metric on the held-out buffer; None while it is empty


def publish(state_dir: Path, family: ModelFamily, layout: ModelLayout, model: np.ndarray,
            model_hash: str, version: int, source: str, held_out: Data) -> Published:
    """Install ``model`` for serving unless its ONNX export fails parity (``ExportError``)."""
    net = family.new_model()
    net.load_state_dict(layout.unflatten(model))
    net.eval()
    data = to_onnx(net, CLASSES).SerializeToString()
    probe = held_out.images[:PARITY_SAMPLES] if len(held_out) else np.random.default_rng(
        0).integers(0, 256, (4, *family.image_shape, 3), np.uint8)
    diff = max_logit_diff(net, data, probe)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"model {model_hash[:12]}: ONNX parity failed, outputs differ by "
                          f"{diff:.2e}")
    score = family.score(net, held_out) if len(held_out) else None
    entry = installed.install(state_dir, data, model_hash, version, source)
    return Published(entry, diff, score)
