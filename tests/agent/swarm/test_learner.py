import numpy as np

from agent.swarm.learner import Learner
from models.codec import CodecConfig, decode
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
