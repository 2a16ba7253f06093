import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint, state_hash
from models.errors import CheckpointError
from models.net import CropNet, NetConfig
from sim.world import CLASSES


def test_round_trip_keeps_weights_and_hash(tmp_path):
    torch.manual_seed(1)
    m = CropNet(NetConfig())
    digest = save_checkpoint(tmp_path / "m.pt", m, CLASSES, meta={"note": "x"})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert state_hash(loaded.state_dict()) == digest == ckpt["model_hash"]
    assert ckpt["classes"] == list(CLASSES) and ckpt["meta"] == {"note": "x"}
    assert not loaded.training


def test_hash_changes_with_any_weight():
    m = CropNet(NetConfig())
    before = state_hash(m.state_dict())
    with torch.no_grad():
        m.head.bias[3] += 1e-6
    assert state_hash(m.state_dict()) != before


def test_bad_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a swarmdrive checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_truncated_and_tampered_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "m.pt", CropNet(NetConfig()), CLASSES)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["state_dict"]["head.bias"] += 1.0
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match the recorded model hash"):
        load_checkpoint(tmp_path / "tampered.pt")
    ckpt["model_args"]["width"] = 24
    torch.save(ckpt, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(tmp_path / "shape.pt")
