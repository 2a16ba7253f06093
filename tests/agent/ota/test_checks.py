"""A release's checks before install, for either model family: the task and input the vehicle
learns, and a smoke test that runs its own crops or frames through the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from agent.ota.checks import ReleaseRejected, load_checked, smoke_test
from chain.ledger import Release
from models.detector import DetConfig, FrameNet
from models.family import CLASSIFIER, DETECTOR
from models.net import CropNet, NetConfig
from models.onnx_export import to_onnx
from models.onnx_format import META_PREFIX
from sim.world import CLASSES

ROUND = 3


def released(model: CropNet | FrameNet) -> tuple[Release, bytes, bytes]:
    """``model`` exported and stamped as round ROUND's release; and its model hash."""
    torch.manual_seed(0)
    proto = to_onnx(model.eval(), tuple(CLASSES))
    meta = {p.key: p.value for p in proto.metadata_props} | {META_PREFIX + "round": str(ROUND)}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    data = proto.SerializeToString()
    release = Release(1, hashlib.sha256(data).digest(), len(data), ROUND, "", False)
    return release, data, bytes.fromhex(meta[META_PREFIX + "model_hash"])


@pytest.fixture(scope="module")
def detector() -> tuple[Release, bytes, bytes]:
    return released(FrameNet(DetConfig()))


def test_a_detector_release_passes_on_a_detector_vehicle_and_its_frames(detector, tmp_path):
    release, data, model_hash = detector
    net = load_checked(release, data, tmp_path / "c.onnx", model_hash, tuple(CLASSES),
                       DETECTOR.task, DETECTOR.image_shape)
    frames = np.random.default_rng(0).integers(0, 256, (4, 240, 320, 3), np.uint8)
    assert smoke_test(release, net, frames, latency_budget_ms=10_000).startswith("4 frames")


def test_a_release_of_the_other_family_is_refused(detector, tmp_path: Path):
    release, data, model_hash = detector
    with pytest.raises(ReleaseRejected, match="a 'detect' model; this vehicle learns a "
                                              "'classify' one"):
        load_checked(release, data, tmp_path / "c.onnx", model_hash, tuple(CLASSES),
                     CLASSIFIER.task, CLASSIFIER.image_shape)
    crops_release, crops_data, crops_hash = released(CropNet(NetConfig(input_size=48)))
    with pytest.raises(ReleaseRejected, match=r"its input \(height, width\) \(48, 48\) is not "
                                              r"\(32, 32\)"):
        load_checked(crops_release, crops_data, tmp_path / "d.onnx", crops_hash,
                     tuple(CLASSES), CLASSIFIER.task, CLASSIFIER.image_shape)
