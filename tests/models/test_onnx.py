import json

import numpy as np
import onnx
import pytest

from models.errors import ExportError, ModelFileError
from models.evaluate import predict
from models.onnx_export import PARITY_TOLERANCE, to_onnx
from models.quantize import quantize_int8
from models.runtime import OnnxClassifier
from sim.world import CLASSES


def test_export_metadata_and_checker(trained):
    proto = onnx.load(str(trained.onnx))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["swarmdrive.classes"]) == list(CLASSES)
    assert meta["swarmdrive.input_size"] == "32"
    assert meta["swarmdrive.model_hash"] == trained.model_hash
    assert json.loads(meta["swarmdrive.mean"]) and json.loads(meta["swarmdrive.std"])


def test_ort_matches_torch_at_every_batch_size(trained):
    clf = OnnxClassifier(trained.onnx)
    images = trained.data.images
    for n in (1, 7, 64):
        diff = np.abs(clf.logits(images[:n]) - predict(trained.model, images[:n])).max()
        assert diff <= PARITY_TOLERANCE
    assert clf.logits(images[:0]).shape == (0, len(CLASSES))


def test_int8_is_smaller_and_agrees(trained, tmp_path):
    out = tmp_path / "q.onnx"
    quantize_int8(to_onnx(trained.model, CLASSES), trained.data.images[:256], out)
    q = OnnxClassifier(out)
    assert q.info.precision == "int8" and q.info.model_hash == trained.model_hash
    assert out.stat().st_size < 0.5 * trained.onnx.stat().st_size
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    images = trained.data.images[256:1256]
    agree = np.mean(q.classify(images)[0] == predict(trained.model, images).argmax(1))
    assert agree > 0.95


def test_int8_needs_calibration_crops(trained, tmp_path):
    with pytest.raises(ExportError, match=r"calibration needs at least 16 labelled images, got 3"):
        quantize_int8(to_onnx(trained.model, CLASSES), trained.data.images[:3], tmp_path / "q.onnx")


def test_bad_model_files(tmp_path, trained):
    with pytest.raises(ModelFileError, match="no such file"):
        OnnxClassifier(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01garbage\xff\xff")
    with pytest.raises(ModelFileError, match=r"junk\.onnx"):
        OnnxClassifier(tmp_path / "junk.onnx")
    proto = onnx.load(str(trained.onnx))
    del proto.metadata_props[:]
    (tmp_path / "plain.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFileError, match="no swarmdrive metadata"):
        OnnxClassifier(tmp_path / "plain.onnx")
