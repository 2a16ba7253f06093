"""ONNX export: dynamic batch, swarmdrive metadata, checker-clean, parity-checked against torch.

Both model families export here: the crop classifier (``crops`` -> ``logits``) and the frame
detector (``frames`` -> ``heat``, ``box``, decoded by models/detect_decode.py in numpy). The
metadata's ``task`` says which, so a consumer knows how to feed the model and read it.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from models.atomic import atomic_write_bytes
from models.checkpoint import state_hash
from models.detect_data import MIN_BOX_PX
from models.detector import FrameNet
from models.errors import ExportError
from models.evaluate import predict
from models.net import CropNet
from models.onnx_format import (
    BOX_NAME,
    FRAMES_NAME,
    HEAT_NAME,
    INPUT_NAME,
    META_FORMAT,
    META_PREFIX,
    OUTPUT_NAME,
)
from models.preprocess import MEAN_RGB, STD_RGB, to_input

OPSET = 17
# Max |torch - ONNX Runtime fp32| / (1 + |torch|): absolute for logits near 0, relative for a
# detector's box distances, which are pixels (up to hundreds) and carry float32's ~1e-7.
PARITY_TOLERANCE = 1e-4

Net = CropNet | FrameNet


@dataclass(frozen=True)
class Signature:
    """The tensors a model family takes and gives, and what its metadata adds."""

    example: torch.Tensor  # one input, batch 1
    input: str
    outputs: tuple[str, ...]
    meta: dict[str, str]


def signature(model: Net) -> Signature:
    if isinstance(model, FrameNet):
        c = model.config
        return Signature(torch.zeros(1, 3, c.height, c.width), FRAMES_NAME, (HEAT_NAME, BOX_NAME),
                         {"task": "detect", "input_width": str(c.width),
                          "input_height": str(c.height), "stride": str(c.stride),
                          "min_box_px": str(MIN_BOX_PX)})
    s = model.config.input_size
    return Signature(torch.zeros(1, 3, s, s), INPUT_NAME, (OUTPUT_NAME,),
                     {"task": "classify", "input_size": str(s)})


def metadata(model: Net, classes: tuple[str, ...], precision: str) -> dict[str, str]:
    """What a consumer needs to feed the model and trust it, as ONNX metadata_props."""
    return {
        "format": META_FORMAT,
        "classes": json.dumps(list(classes)),
        "input_layout": "NCHW float32 RGB, (x/255 - mean) / std",
        "mean": json.dumps(list(MEAN_RGB)),
        "std": json.dumps(list(STD_RGB)),
        "model_hash": state_hash(model.state_dict()),
        "precision": precision,
        **signature(model).meta,
    }


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for k, v in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, v


def to_onnx(model: Net, classes: tuple[str, ...]) -> onnx.ModelProto:
    """The fp32 ONNX graph of ``model`` with metadata, checked by ``onnx.checker``."""
    model.eval()
    sig = signature(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, and traces GroupNorm's
        # batch-size check as a constant; neither affects these fixed-shape networks.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (sig.example,), buf,  # type: ignore[arg-type]  # accepts BytesIO
            dynamo=False, opset_version=OPSET,
            input_names=[sig.input], output_names=list(sig.outputs),
            dynamic_axes={name: {0: "batch"} for name in (sig.input, *sig.outputs)},
        )
    proto = onnx.load_from_string(buf.getvalue())
    # CropNet.forward returns (logits, None); drop stray outputs so the graph has exactly ours.
    while len(proto.graph.output) > len(sig.outputs):
        proto.graph.output.pop()
    proto.producer_name = "swarmdrive"
    set_metadata(proto, metadata(model, classes, "fp32"))
    onnx.checker.check_model(proto, full_check=True)
    return proto


@torch.no_grad()
def torch_outputs(model: Net, images: np.ndarray) -> list[np.ndarray]:
    """What torch computes for uint8 ``images`` (crops or frames at the model's size)."""
    if isinstance(model, FrameNet):
        model.eval()
        return [t.numpy() for t in model(torch.from_numpy(to_input(images)))]
    return [predict(model, images)]


def max_logit_diff(model: Net, proto_bytes: bytes, images: np.ndarray) -> float:
    """Largest |torch - ONNX Runtime| / (1 + |torch|) over ``images`` (uint8 crops or frames)."""
    import onnxruntime as ort

    sig = signature(model)
    sess = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    ours = sess.run(list(sig.outputs), {sig.input: to_input(images)})
    return max(float((np.abs(a - b) / (1 + np.abs(b))).max())
               for a, b in zip(ours, torch_outputs(model, images), strict=True))


def export(model: Net, classes: tuple[str, ...], out: Path,
           parity_images: np.ndarray) -> float:
    """Export ``model`` to ``out`` after the parity check; returns the max output difference."""
    proto = to_onnx(model, classes)
    data = proto.SerializeToString()
    diff = max_logit_diff(model, data, parity_images)
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX parity failed: outputs differ by {diff:.2e} "
                          f"(> {PARITY_TOLERANCE:.0e})")
    atomic_write_bytes(out, data)
    return diff
