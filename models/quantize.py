"""int8 static quantisation with ONNX Runtime, calibrated on the vehicle's own frames.

Only convolutions and the classifier are quantised (QDQ, per-channel int8 weights, uint8
activations), except those that ONNX Runtime runs faster or better in fp32 (``fp32_convs``).
GroupNorm stays fp32: its statistics are per sample, and quantising its pieces
(InstanceNormalization, Mul, Add) costs more in Q/DQ nodes than it saves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from models.atomic import atomic_write_bytes
from models.errors import ExportError
from models.onnx_export import set_metadata
from models.onnx_format import META_PREFIX
from models.preprocess import to_input

MIN_CALIBRATION_CROPS = 16  # fewer gives activation ranges that clip real frames


class _Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray, input_name: str, batch: int = 32) -> None:
        starts = range(0, len(images), batch)
        self._batches = iter([to_input(images[i : i + batch]) for i in starts])
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._batches, None)
        return None if x is None else {self._name: x}


def fp32_convs(proto: onnx.ModelProto) -> list[str]:
    """Convolutions left in fp32, each for a measured reason (one thread, AVX2 without VNNI):

    - those that write a graph output, directly or through Softplus (the detector's 1x1
      heads): a few thousand MACs, and int8 heatmap logits and box distances cost ~1.5 points
      of mAP@0.5 (0.4 with them in fp32);
    - those that read the graph input: on three channels int8 runs 2.2 ms where fp32 runs 0.6;
    - depthwise ones (group > 1): int8 is slower, and its Q/DQ pairs cost more than they save.
    """
    outputs = {o.name for o in proto.graph.output}
    inputs = {i.name for i in proto.graph.input}
    softplus_in = {n.input[0]: n.output[0] for n in proto.graph.node if n.op_type == "Softplus"}
    names = []
    for n in proto.graph.node:
        if n.op_type != "Conv":
            continue
        grouped = any(a.name == "group" and a.i > 1 for a in n.attribute)
        if n.output[0] in outputs or n.output[0] in softplus_in or n.input[0] in inputs or grouped:
            names.append(n.name)
    return names


def quantize_int8(fp32: onnx.ModelProto, calibration: np.ndarray, out: Path) -> None:
    """Write the int8 version of ``fp32`` to ``out``, calibrated on ``calibration`` images
    (uint8 crops for a classifier, frames at the network's size for a detector)."""
    if len(calibration) < MIN_CALIBRATION_CROPS:
        raise ExportError(f"int8 calibration needs at least {MIN_CALIBRATION_CROPS} labelled "
                          f"images, got {len(calibration)}: give more calibration frames")
    meta = {p.key[len(META_PREFIX):]: p.value for p in fp32.metadata_props
            if p.key.startswith(META_PREFIX)}
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, q = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32.SerializeToString())
        # ORT's symbolic shape inference cannot follow the detector's dynamic-batch Resize
        # (it raises "Incomplete symbolic shape inference"); ONNX's own inference suffices.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        reader = _Images(calibration, fp32.graph.input[0].name)
        quantize_static(str(pre), str(q), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm"],
                        nodes_to_exclude=fp32_convs(onnx.load(str(pre))))
        proto = onnx.load(str(q))
    set_metadata(proto, {**meta, "precision": "int8"})
    onnx.checker.check_model(proto)
    atomic_write_bytes(out, proto.SerializeToString())
