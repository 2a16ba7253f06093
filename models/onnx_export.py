"""ONNX export: dynamic batch, swarmdrive metadata, checker-clean, parity-checked against torch."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from models.atomic import atomic_write_bytes
from models.checkpoint import state_hash
from models.errors import ExportError
from models.evaluate import predict
from models.net import CropNet
from models.onnx_format import INPUT_NAME, META_FORMAT, META_PREFIX, OUTPUT_NAME
from models.preprocess import MEAN_RGB, STD_RGB, to_input

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |logit difference| between torch and ONNX Runtime fp32


def metadata(model: CropNet, classes: tuple[str, ...], precision: str) -> dict[str, str]:
    """What a consumer needs to feed the model and trust it, as ONNX metadata_props."""
    return {
        "format": META_FORMAT,
        "classes": json.dumps(list(classes)),
        "input_size": str(model.config.input_size),
        "input_layout": "NCHW float32 RGB, (x/255 - mean) / std",
        "mean": json.dumps(list(MEAN_RGB)),
        "std": json.dumps(list(STD_RGB)),
        "model_hash": state_hash(model.state_dict()),
        "precision": precision,
    }


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for k, v in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, v


def to_onnx(model: CropNet, classes: tuple[str, ...]) -> onnx.ModelProto:
    """The fp32 ONNX graph of ``model`` with metadata, checked by ``onnx.checker``."""
    model.eval()
    s = model.config.input_size
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, and traces GroupNorm's
        # batch-size check as a constant; neither affects this fixed-shape network.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export(model, s, buf)
    proto = onnx.load_from_string(buf.getvalue())
    # forward() returns (logits, None); drop any stray outputs so the graph has exactly one.
    while len(proto.graph.output) > 1:
        proto.graph.output.pop()
    proto.producer_name = "swarmdrive"
    set_metadata(proto, metadata(model, classes, "fp32"))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _export(model: CropNet, size: int, buf: io.BytesIO) -> None:
    torch.onnx.export(
        model, (torch.zeros(1, 3, size, size),), buf,  # type: ignore[arg-type]  # accepts BytesIO
        dynamo=False, opset_version=OPSET,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )


def max_logit_diff(model: CropNet, proto_bytes: bytes, images: np.ndarray) -> float:
    """Largest |torch - ONNX Runtime| logit over ``images`` (uint8 crops)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    ours = sess.run([OUTPUT_NAME], {INPUT_NAME: to_input(images)})[0]
    return float(np.abs(ours - predict(model, images)).max())


def export(model: CropNet, classes: tuple[str, ...], out: Path,
           parity_images: np.ndarray) -> float:
    """Export ``model`` to ``out`` after the parity check; returns the max logit difference."""
    proto = to_onnx(model, classes)
    data = proto.SerializeToString()
    diff = max_logit_diff(model, data, parity_images)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX parity failed: logits differ by {diff:.2e} "
                          f"(> {PARITY_TOLERANCE:.0e})")
    atomic_write_bytes(out, data)
    return diff
