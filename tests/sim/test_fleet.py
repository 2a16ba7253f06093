"""The in-memory fleet: reproducible, merges what the vehicles send, survives attackers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.codec import CodecConfig
from models.merge import MergeConfig
from models.recipe import RECIPES
from sim.attacks import alie_z
from sim.fleet import FleetConfig, make_fleet_data, run_swarm
from sim.profiles import fleet_profiles

SMALL = FleetConfig(vehicles=4, rounds=3, local_steps=4, batch_size=16, frames_per_weather=6,
                    test_frames_per_domain=1, codec=CodecConfig(0.05, 8))


@pytest.fixture(scope="module")
def data():
    return make_fleet_data(SMALL)


def test_the_fleet_learns_the_detector_reproducibly_with_compressed_deltas():
    cfg = replace(SMALL, model="detector", vehicles=3, rounds=2, local_steps=2, batch_size=4,
                  frames_per_weather=3, codec=CodecConfig(0.01, 8))
    data = make_fleet_data(cfg)
    a, b = run_swarm(cfg, data), run_swarm(cfg, data)
    assert [r.model_hash for r in a.rounds] == [r.model_hash for r in b.rounds]
    assert len({r.model_hash for r in a.rounds}) == cfg.rounds
    dense = 4 * a.model.num_parameters()
    assert all(r.payload_bytes < dense / 50 for r in a.rounds)  # 1% at 8 bits, with indices
    assert all(r.rejected == 0 for r in a.rounds)
    assert 0.0 <= a.accuracy <= 1.0  # mAP@0.5 of the merged detector


def test_the_baselines_keep_the_recipes_rate_when_the_swarms_is_tuned():
    detector = replace(replace(SMALL, model="detector").with_family_recipe(), lr=8e-3)
    assert detector.train_config().lr == 8e-3
    assert detector.train_config(solo=True).lr == RECIPES["detector"].lr
    # A fleet given one rate (a scenario's) uses it for its baselines too.
    assert replace(SMALL, lr=5e-3).train_config(solo=True).lr == 5e-3


def test_profiles_are_distinct_and_skewed():
    profiles = fleet_profiles(8)
    assert len(set(profiles)) == 8
    assert len({p.town for p in profiles}) == 7
    assert all(1 <= len(p.weathers) <= 2 for p in profiles)


@pytest.mark.slow
def test_swarm_is_reproducible(data):
    a = run_swarm(SMALL, data)
    b = run_swarm(SMALL, data)
    assert a.model_hash == b.model_hash
    assert [r.model_hash for r in a.rounds] == [r.model_hash for r in b.rounds]
    assert len({r.model_hash for r in a.rounds}) == SMALL.rounds  # the model moves every round
    assert all(r.payload_bytes < 0.1 * 4 * 145_000 for r in a.rounds)  # compressed


@pytest.mark.slow
def test_attack_payloads_reach_the_merge_and_its_checks(data):
    """Attackers' deltas travel through the codec into the merge like any other; the rule's
    robustness itself is tested against references in tests/models/test_merge.py."""
    clean = run_swarm(replace(SMALL, rounds=1), data)
    flipped = run_swarm(replace(SMALL, rounds=1, attackers=1, attack="sign_flip"), data)
    assert flipped.model_hash != clean.model_hash
    # A norm limit below the noise attack's norm rejects it before the rule, every round.
    tight = MergeConfig("mean", max_norm=3.0)  # honest deltas here are ~1, noise ~10
    noisy = run_swarm(replace(SMALL, rounds=2, attackers=1, attack="noise", merge=tight), data)
    assert [r.rejected for r in noisy.rounds] == [1, 1]


def test_alie_z_grows_with_the_attackers():
    """More attackers need fewer honest supporters, so they can shift further."""
    assert 0 <= alie_z(8, 1) < alie_z(8, 2) < alie_z(8, 3)
    assert alie_z(50, 24) > 1.5


@pytest.mark.slow
def test_a_lying_committer_costs_expiries_not_the_model_and_inflation_buys_no_weight(data):
    clean = run_swarm(SMALL, data)
    lying = run_swarm(replace(SMALL, attackers=1, attack="committer"), data)
    assert lying.model_hash == clean.model_hash  # its junk never reached a quorum
    assert [r.expired for r in lying.rounds] == [1 if r % 4 == 0 else 0 for r in range(3)]
    # A sign flip claiming 2**32 - 1 samples weighs what a median vehicle weighs: exactly the
    # sign flip with an honest count, as long as the cap is the attacker's own or lower.
    mean = MergeConfig("mean")
    flipped = run_swarm(replace(SMALL, rounds=1, attackers=1, attack="sign_flip", merge=mean),
                        data)
    inflated = run_swarm(replace(SMALL, rounds=1, attackers=1, attack="inflate", merge=mean),
                         data)
    assert inflated.model_hash != clean.model_hash
    assert abs(inflated.accuracy - flipped.accuracy) <= 0.05
