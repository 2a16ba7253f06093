"""Handing a final model to the inference service: export to ONNX, check parity with torch on
the vehicle's own crops, measure it on the held-out buffer, install it atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.serve import installed
from models.classes import CLASSES
from models.data import CropSet
from models.errors import ExportError
from models.evaluate import evaluate
from models.layout import ModelLayout
from models.net import CropNet, NetConfig
from models.onnx_export import PARITY_TOLERANCE, max_logit_diff, to_onnx

PARITY_CROPS = 64


@dataclass(frozen=True)
class Published:
    entry: installed.Installed
    parity: float  # max |torch - ONNX Runtime| logit
    accuracy: float | None  # on the held-out buffer; None while it is empty


def publish(state_dir: Path, layout: ModelLayout, model: np.ndarray, model_hash: str,
            version: int, source: str, held_out: CropSet) -> Published:
    """Install ``model`` for serving unless its ONNX export fails parity (``ExportError``)."""
    net = CropNet(NetConfig())
    net.load_state_dict(layout.unflatten(model))
    net.eval()
    data = to_onnx(net, CLASSES).SerializeToString()
    s = net.config.input_size
    probe = held_out.images[:PARITY_CROPS] if len(held_out) else np.random.default_rng(
        0).integers(0, 256, (8, s, s, 3), np.uint8)
    diff = max_logit_diff(net, data, probe)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"model {model_hash[:12]}: ONNX parity failed, logits differ by "
                          f"{diff:.2e}")
    accuracy = evaluate(net, held_out, CLASSES).accuracy if len(held_out) else None
    entry = installed.install(state_dir, data, model_hash, version, source)
    return Published(entry, diff, accuracy)
