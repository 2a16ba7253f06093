from pathlib import Path

import numpy as np
import pytest

from agent.swarm.driver import load_vehicle_checkpoint, save_vehicle_checkpoint
from agent.swarm.learner import Learner
from models.codec import DENSE, CodecConfig, decode
from models.data import CropSet
from models.layout import flat_hash
from models.train import TrainConfig


def test_contribute_sends_a_decodable_delta_and_keeps_the_rest(trained):
    lr = Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(0.01, 8), total_steps=20,
                 seed=3)
    base = lr.weights()
    base_hash = bytes.fromhex(flat_hash(lr.layout, base))
    out = lr.contribute(base, base_hash, round_=4, local_steps=3)
    got = decode(out.payload, lr.layout)
    assert got.round == 4 and got.base_hash == base_hash
    assert out.samples == len(trained.data) and np.isfinite(out.loss)
    # What was sent plus what is kept is exactly the training delta.
    assert np.array_equal(got.values + lr.residual, out.delta)
    assert np.count_nonzero(got.values) <= round(0.01 * lr.layout.size)
    # The schedule follows the fleet's round, so a vehicle that missed rounds is not behind.
    assert lr.step == 15
    lr.contribute(base, base_hash, round_=6, local_steps=3)
    assert lr.step == 21


def test_training_starts_from_the_given_base(trained):
    lr = Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(), total_steps=10, seed=1)
    base = np.zeros(lr.layout.size, np.float32)
    delta, _ = lr.train_round(base, 1)
    assert np.allclose(lr.weights(), base + delta)


def _pair(trained) -> tuple[Learner, Learner]:
    """Two learners in the same state."""
    a, b = (Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(), total_steps=40,
                    seed=5) for _ in range(2))
    return a, b


def by_hand(b: Learner, merged: np.ndarray) -> np.ndarray:
    """Round 2's delta against ``merged``: two steps from b's own weights, moved onto
    ``merged``, three more from there."""
    origin = b.weights()
    b.step = 10
    b._steps(2)
    b.load(merged + (b.weights() - origin))
    b._steps(3)
    return b.weights() - merged


def test_steps_taken_ahead_carry_over_onto_the_final_base(trained):
    a, b = _pair(trained)
    merged = a.weights() + 0.01  # the round's final model, known only after two steps
    calls = iter(range(100))
    assert a.train_ahead(2, local_steps=5, stop=lambda: next(calls) >= 2) == 2
    delta, _ = a.train_round(merged, 5)
    assert a.step == 15
    assert np.array_equal(delta, by_hand(b, merged))
    assert not np.array_equal(delta, Learner(trained.data, TrainConfig(batch_size=16),
                                             CodecConfig(), 40, seed=5).train_round(merged, 5)[0])


def test_steps_taken_ahead_move_onto_the_verified_merge_as_soon_as_it_is_known(trained):
    a, b = _pair(trained)
    merged = a.weights() + 0.01  # verified after two steps, final after three
    calls = iter(range(100))

    def stop() -> bool:
        k = next(calls)
        if k == 2:
            a.rebase_ahead(2, merged)
        return k >= 3

    assert a.train_ahead(2, local_steps=5, stop=stop) == 3
    delta, _ = a.train_round(merged, 5)
    assert np.array_equal(delta, by_hand(b, merged))


def test_steps_taken_ahead_for_another_round_are_dropped(trained):
    a, b = _pair(trained)
    base = a.weights()
    base_hash = bytes.fromhex(flat_hash(a.layout, base))
    assert a.train_ahead(3, local_steps=4, stop=lambda: False) == 4
    a.g.set_state(b.g.get_state())  # the sampler and optimiser moved on; compare the rest
    a.opt.load_state_dict(b.opt.state_dict())
    got = a.contribute(base, base_hash, round_=5, local_steps=4)
    want = b.contribute(base, base_hash, round_=5, local_steps=4)
    assert got.payload == want.payload and a.step == b.step == 24


def test_a_learner_without_samples_takes_no_steps_ahead(trained):
    empty = CropSet(trained.data.images[:0], trained.data.labels[:0])
    lr = Learner(empty, TrainConfig(batch_size=16), CodecConfig(), total_steps=10, seed=1)
    assert lr.train_ahead(1, local_steps=3, stop=lambda: False) == 0


def test_a_slow_round_lets_the_trainer_go_on_past_its_local_steps(trained):
    a, b = _pair(trained)
    merged = a.weights() + 0.01
    assert a.train_ahead(2, local_steps=5, stop=lambda: False, max_steps=8) == 8
    delta, _ = a.train_round(merged, 5)  # all eight carried, none added
    assert a.step == 18
    origin = b.weights()
    b.step = 10
    b._steps(8)
    assert np.array_equal(delta, merged + (b.weights() - origin) - merged)


def _adam_steps(lr: Learner, local_steps: int, round_: int) -> dict[str, np.ndarray]:
    """Where AdamW's first moment would move each weight in ``local_steps`` steps of round
    ``round_`` at the current second moment (bias-corrected, as the optimiser steps)."""
    from models.train import lr_at

    group = lr.opt.param_groups[0]
    (b1, b2), eps = group["betas"], group["eps"]
    rate = np.mean([lr_at(s, lr.total_steps, lr.train_cfg)
                    for s in range(round_ * local_steps, (round_ + 1) * local_steps)])
    out = {}
    for name, p in lr.model.named_parameters():
        st, t = lr.opt.state[p], float(lr.opt.state[p]["step"])
        m_hat, v_hat = st["exp_avg"] / (1 - b1 ** t), st["exp_avg_sq"] / (1 - b2 ** t)
        out[name] = (-local_steps * rate * m_hat / (v_hat.sqrt() + eps)).numpy().copy()
    return out


def restart(a: Learner, c: Learner, folder: Path) -> None:
    """``c`` takes over from ``a`` as a vehicle restarts: through its checkpoint file."""
    save_vehicle_checkpoint(folder / "learner.ckpt", 1, a.weights(), a.state())
    _, model = load_vehicle_checkpoint(folder / "learner.ckpt", c)
    c.load(model)


def test_fleet_momentum_moves_the_first_moment_onto_the_fleets_update(trained):
    with pytest.raises(ValueError, match="fleet momentum needs dense deltas"):
        Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(0.05, 8), total_steps=40,
                seed=5, fleet_momentum=True)
    a, b = (Learner(trained.data, TrainConfig(batch_size=16), DENSE, total_steps=40, seed=5,
                    fleet_momentum=fm) for fm in (True, False))
    base = a.weights()
    h = bytes.fromhex(flat_hash(a.layout, base))
    sent_a, sent_b = (x.contribute(base, h, round_=3, local_steps=4) for x in (a, b))
    assert sent_a.payload == sent_b.payload  # the option changes nothing before a merge
    mine = base + decode(sent_a.payload, a.layout).values
    assert a._mine is not None and np.allclose(a._mine[1], mine, atol=1e-7)
    before = _adam_steps(a, 4, 3)
    fleet = np.random.default_rng(0).normal(0, 1e-3, a.layout.size).astype(np.float32)
    merged = mine + fleet  # the others moved the model further than our payload did
    a._follow_fleet(merged - a._mine[1], 3, 4)
    after = _adam_steps(a, 4, 3)
    for t in a.layout.tensors:  # the moment now takes the fleet's step, ours plus the gap
        gap = fleet[t.offset:t.offset + t.numel].reshape(t.shape)
        assert np.allclose(after[t.name] - before[t.name], gap, rtol=1e-3, atol=1e-7)


def test_fleet_momentum_follows_only_the_merge_of_the_round_just_sent(trained, tmp_path):
    a, b = (Learner(trained.data, TrainConfig(batch_size=16), DENSE, total_steps=40,
                    seed=5, fleet_momentum=fm) for fm in (True, False))
    base = a.weights()
    h = bytes.fromhex(flat_hash(a.layout, base))
    for x in (a, b):
        x.contribute(base, h, round_=1, local_steps=2)
    merged = base + 0.001
    mh = bytes.fromhex(flat_hash(a.layout, merged))
    # A restart keeps what the next merge is compared with.
    c = Learner(trained.data, TrainConfig(batch_size=16), DENSE, total_steps=40, seed=9,
                fleet_momentum=True)
    restart(a, c, tmp_path)
    got = [x.contribute(merged, mh, round_=2, local_steps=2).payload for x in (a, b, c)]
    assert got[0] != got[1] and got[0] == got[2]
    # A round skipped: the next base is not the merge of ours, so the moment stays.
    a2, b2 = (Learner(trained.data, TrainConfig(batch_size=16), DENSE, total_steps=40,
                      seed=5, fleet_momentum=fm) for fm in (True, False))
    for x in (a2, b2):
        x.contribute(base, h, round_=1, local_steps=2)
    assert (a2.contribute(merged, mh, round_=3, local_steps=2).payload ==
            b2.contribute(merged, mh, round_=3, local_steps=2).payload)


def test_lookahead_steps_from_the_fleets_trend_and_sends_the_steps_alone(trained, tmp_path):
    with pytest.raises(ValueError, match="lookahead"):
        Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(0.05, 8), total_steps=40,
                seed=5, lookahead=-1.0)
    a, b, c = (Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(0.05, 8),
                       total_steps=40, seed=5, lookahead=look) for look in (10.0, 0.0, 10.0))
    base = a.weights()
    h = bytes.fromhex(flat_hash(a.layout, base))
    first = [x.contribute(base, h, round_=1, local_steps=2).payload for x in (a, b)]
    assert first[0] == first[1]  # no trend before a merge
    restart(a, c, tmp_path)  # a restart keeps the trend's last base
    merged = base + np.random.default_rng(0).normal(0, 1e-3, a.layout.size).astype(np.float32)
    mh = bytes.fromhex(flat_hash(a.layout, merged))
    # Two rounds later: the update since round 1 counts per round, 5% of it into the trend.
    start = merged + np.float32(10.0) * (np.float32(0.05) * ((merged - base) / np.float32(2)))
    hand = Learner(trained.data, TrainConfig(batch_size=16), CodecConfig(0.05, 8),
                   total_steps=40, seed=5)
    hand.restore(a.state())
    hand.step = 6
    want, _ = hand.train_round(start, 2)
    got = [x.contribute(merged, mh, round_=3, local_steps=2) for x in (a, b, c)]
    assert np.array_equal(got[0].delta, want)  # W minus where the steps started
    assert got[0].payload == got[2].payload and got[0].payload != got[1].payload
