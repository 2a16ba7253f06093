import numpy as np

from agent.swarm.learner import Learner
from models.codec import CodecConfig, decode
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
