"""The in-memory fleet: reproducible, merges what the vehicles send, survives attackers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.codec import CodecConfig
from models.merge import MergeConfig
from sim.attacks import alie_z
from sim.fleet import FleetConfig, make_fleet_data, run_swarm
from sim.profiles import fleet_profiles

SMALL = FleetConfig(vehicles=4, rounds=3, local_steps=4, batch_size=16, frames_per_weather=6,
                    test_frames_per_domain=1, codec=CodecConfig(0.05, 8))


@pytest.fixture(scope="module")
def data():
    return make_fleet_data(SMALL)


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
def test_attackers_change_the_plain_mean_more_than_the_median(data):
    clean = run_swarm(replace(SMALL, merge=MergeConfig("median")), data)
    attacked = run_swarm(replace(SMALL, attackers=1, attack="noise",
                                 merge=MergeConfig("median", byzantine=1)), data)
    mean_attacked = run_swarm(replace(SMALL, attackers=1, attack="noise"), data)
    assert attacked.rounds[-1].loss < mean_attacked.rounds[-1].loss
    assert clean.model_hash != attacked.model_hash


def test_alie_z_grows_with_the_attackers():
    """More attackers need fewer honest supporters, so they can shift further."""
    assert 0 < alie_z(8, 1) < alie_z(8, 2) < alie_z(8, 3)
    assert alie_z(50, 24) > 1.5
