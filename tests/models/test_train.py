import numpy as np
import pytest
import torch

from models.checkpoint import state_hash
from models.evaluate import evaluate, report
from models.net import CropNet, NetConfig
from models.train import TrainConfig, train
from sim.datasets import domains_crops
from sim.world import CLASSES
from tests.conftest import SMALL_DOMAINS


def test_report_counts():
    rep = report(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), ("a", "b", "c", "d"))
    assert rep.accuracy == 0.75
    assert rep.per_class_recall == {"a": 1.0, "b": 1.0, "c": 0.5, "d": None}
    assert rep.confusion[2] == [0, 1, 1, 0]


def test_trained_model_beats_chance_by_far(trained):
    held_out = domains_crops(SMALL_DOMAINS, seed=99, frames_per_domain=8, size=32)
    rep = evaluate(trained.model, held_out, CLASSES)
    assert rep.n > 100
    majority = np.bincount(held_out.labels).max() / rep.n
    assert rep.accuracy > max(0.6, majority + 0.3)  # chance is 1/8


@pytest.mark.slow
def test_training_is_deterministic(trained):
    data = trained.data
    hashes = []
    for _ in range(2):
        torch.manual_seed(0)
        m = CropNet(NetConfig())
        train(m, data, TrainConfig(steps=20, seed=5, batch_size=32))
        hashes.append(state_hash(m.state_dict()))
    assert hashes[0] == hashes[1]


def test_empty_data_is_refused(trained):
    from models.data import CropSet

    empty = CropSet(trained.data.images[:0], trained.data.labels[:0])
    with pytest.raises(ValueError, match="no labelled crops"):
        train(CropNet(NetConfig()), empty, TrainConfig(steps=1))
