import logging

import numpy as np
import pytest
import torch

import models.train
from models.checkpoint import state_hash
from models.evaluate import evaluate, report
from models.net import CropNet, NetConfig
from models.preprocess import to_input
from models.train import TrainConfig, get_batch, tensors, train, use_bf16
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


def test_a_batch_is_normalised_when_drawn_exactly_as_the_whole_set_would_be(trained):
    # The crops stay uint8 (a vehicle's buffer would be 4x bigger in float32, and converted
    # again whenever it grows); a batch must be bit for bit what indexing a converted set gave.
    x, y = tensors(trained.data)
    assert x.dtype == np.uint8
    whole = torch.from_numpy(to_input(trained.data.images))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    xb, yb = get_batch(x, y, 32, g1)
    idx = torch.randint(len(y), (32,), generator=g2)
    flip = torch.rand(32, generator=g2) < 0.5
    want = torch.where(flip[:, None, None, None], whole[idx].flip(3), whole[idx])
    assert torch.equal(xb, want) and torch.equal(yb, y[idx]) and flip.any() and not flip.all()


def test_a_vehicle_trains_in_bfloat16_when_told_or_when_its_cpu_computes_it():
    assert (use_bf16("fp32"), use_bf16("bf16")) == (False, True)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert use_bf16("auto") is native


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_asked_for_on_a_cpu_that_emulates_it_is_obeyed_with_a_warning(monkeypatch,
                                                                               native):
    monkeypatch.setattr(models.train, "native_bf16", lambda: native)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("models.train")
    logger.addHandler(handler)
    try:
        assert use_bf16("bf16") and use_bf16("auto") is native and not use_bf16("fp32")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage().split()[0] for r in seen] == ([] if native else ["bf16_emulated"])
