"""The round engine's rules, without sockets, threads or a chain."""

from __future__ import annotations

import hashlib

import pytest

from agent.p2p.announce import Announcement, Fleet, sign
from agent.p2p.identity import Identity
from agent.swarm.engine import (
    Announce,
    Commit,
    Engine,
    EngineConfig,
    Fetch,
    FetchAnnouncement,
    Sync,
    Train,
    Verify,
)
from chain.ledger import RoundCommitment

FLEET = Fleet(1337, b"\x42" * 20)
BASE = hashlib.sha256(b"genesis").digest()
IDS = [Identity.from_secret(hashlib.sha256(b"vehicle %d" % i).digest()) for i in range(4)]
ADDRS = tuple(i.address for i in IDS)
CFG = EngineConfig(min_peers=2, round_timeout_s=60, fallback_s=10, reannounce_s=5, retry_s=1)


def ann(i: int, round_: int = 0, base: bytes = BASE, tag: bytes = b"") -> Announcement:
    payload = hashlib.sha256(b"payload %d %d" % (i, round_) + tag).digest()
    return sign(IDS[i], FLEET, round_, base, payload, 1000 + i, 50 + i, 0.5)


def engine_for(i: int, alive: tuple[int, ...] = (0, 1, 2, 3), cfg: EngineConfig = CFG,
               round_: int = 0) -> Engine:
    e = Engine(ADDRS[i], ADDRS, cfg, alive=frozenset(ADDRS[j] for j in alive if j != i))
    assert e.start(round_, BASE, now=0.0) == [Train(round_, BASE)]
    return e


def committer_of(round_: int) -> int:
    """Index into IDS of the rotation's first vehicle for ``round_``."""
    order = sorted(ADDRS, key=str.lower)
    return ADDRS.index(order[round_ % len(order)])


def contribute_all(e: Engine, me: int, who: tuple[int, ...], now: float = 1.0) -> None:
    for j in who:
        a = ann(j)
        if j == me:
            assert e.contributed(a, now) == [Announce(a)]
        else:
            assert e.announced(a, now) == [Fetch(a.payload_hash, a.size, a.sender)]
            assert e.fetched(a.payload_hash, True, now) == []


def test_the_committer_commits_once_every_live_vehicle_contributed():
    c = committer_of(0)
    e = engine_for(c)
    contribute_all(e, c, (0, 1, 2))
    assert e.tick(2.0) == []  # vehicle 3 is connected: wait for it
    contribute_all(e, c, (3,))
    (commit,) = [a for a in e.tick(3.0) if isinstance(a, Commit)]
    hashes = [a.payload_hash for a in commit.contributions]
    assert hashes == sorted(hashes) and len(hashes) == 4
    assert commit.round == 0 and commit.base_hash == BASE
    assert not [a for a in e.tick(4.0) if isinstance(a, Commit)]  # once


def test_others_do_not_commit_before_their_fallback_turn():
    c = committer_of(0)
    other = (c + 1) % 4
    e = engine_for(other)
    contribute_all(e, other, (0, 1, 2, 3))
    rank = e.committer_rank(0)
    assert rank >= 1
    assert not [a for a in e.tick(CFG.round_timeout_s + rank * CFG.fallback_s - 0.1)
                if isinstance(a, Commit)]
    assert [a for a in e.tick(CFG.round_timeout_s + rank * CFG.fallback_s)
            if isinstance(a, Commit)]


def test_a_disconnected_vehicle_is_not_waited_for_nor_committer():
    gone = committer_of(0)
    rest = tuple(j for j in range(4) if j != gone)
    # The rotation's first vehicle is gone: the next one in the rotation goes first.
    order = sorted(ADDRS, key=str.lower)
    nxt = ADDRS.index(order[(order.index(ADDRS[gone]) + 1) % 4])
    e = engine_for(nxt, alive=rest)
    assert e.committer_rank(0) == 0
    contribute_all(e, nxt, rest)
    (commit,) = [a for a in e.tick(2.0) if isinstance(a, Commit)]
    assert {a.sender for a in commit.contributions} == {ADDRS[j] for j in rest}


def test_below_min_peers_nobody_commits_even_after_the_deadline():
    c = committer_of(0)
    e = engine_for(c, alive=(c,), cfg=EngineConfig(min_peers=3, round_timeout_s=5))
    contribute_all(e, c, (c,))
    assert not [a for a in e.tick(1e6) if isinstance(a, Commit)]


def test_a_silent_connected_vehicle_is_dropped_at_the_deadline():
    c = committer_of(0)
    e = engine_for(c)
    present = tuple(j for j in range(4) if j != (c + 1) % 4)
    contribute_all(e, c, present)
    assert not [a for a in e.tick(CFG.round_timeout_s - 1) if isinstance(a, Commit)]
    (commit,) = [a for a in e.tick(CFG.round_timeout_s) if isinstance(a, Commit)]
    assert len(commit.contributions) == 3


STRANGER = Identity.from_secret(b"\x07" * 32)


@pytest.mark.parametrize("a, reason", [
    (sign(STRANGER, FLEET, 1, BASE, b"\x01" * 32, 1, 1, 0.0), "unregistered"),
    (ann(1, round_=3), "future_round"),
    (ann(1, round_=1, base=b"\x00" * 32), "wrong_base"),
])
def test_check_names_why_an_announcement_is_ignored(a, reason):
    e = engine_for(0, round_=1)
    assert e.check(a) == reason
    assert e.announced(a, 1.0) == []
    assert e.stats[f"announce_rejected_{reason}"] == 1


def test_replays_of_old_rounds_and_equivocation_are_ignored_and_counted():
    e = engine_for(0, round_=2)
    assert e.announced(ann(1, round_=1), 1.0) == []
    assert e.stats["announce_rejected_stale_round"] == 1
    first = ann(1, round_=2)
    assert e.announced(first, 1.0)
    assert e.announced(first, 1.5) == []  # the same one again: a duplicate, not a second vote
    assert e.stats["announce_duplicate"] == 1
    assert e.announced(ann(1, round_=2, tag=b"other"), 2.0) == []
    assert e.stats["announce_rejected_equivocation"] == 1


def test_next_round_announcements_wait_for_their_round():
    e = engine_for(0)
    early = ann(1, round_=1, base=b"\x09" * 32)
    assert e.announced(early, 1.0) == []  # kept, not fetched yet
    actions = e.start(1, b"\x09" * 32, 2.0)
    assert Fetch(early.payload_hash, early.size, early.sender) in actions


def test_a_commitment_is_verified_on_exactly_its_set():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    a0, a3 = ann(0), ann(3)
    chosen = sorted([a0.payload_hash, ann(1).payload_hash, a3.payload_hash])
    c = RoundCommitment(0, ADDRS[0], BASE, b"\x55" * 32, b"", tuple(chosen), 9)
    actions = e.committed(c, 3.0)
    # a0 never reached us by gossip: fetch its announcement (for the sample count), then it.
    assert FetchAnnouncement(a0.payload_hash) in actions and FetchAnnouncement(
        a3.payload_hash) in actions
    assert e.announcement_fetched(a3, a3.payload_hash, 3.1) == [
        Fetch(a3.payload_hash, a3.size, a3.sender)]
    assert e.fetched(a3.payload_hash, True, 3.2) == []
    assert e.announcement_fetched(a0, a0.payload_hash, 3.3) == [
        Fetch(a0.payload_hash, a0.size, a0.sender)]
    (verify,) = e.fetched(a0.payload_hash, True, 3.4)
    assert isinstance(verify, Verify)
    assert [a.payload_hash for a in verify.contributions] == chosen  # ann(2) is not in it
    assert e.verified(True) == [] and e.stats["rounds_verified"] == 1


def test_a_mismatch_or_a_vehicle_counted_twice_means_sync_to_the_chain():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    c = RoundCommitment(0, ADDRS[2], BASE, b"\x66" * 32, b"", tuple(sorted(
        [ann(1).payload_hash, ann(2).payload_hash])), 9)
    (verify,) = e.committed(c, 3.0)
    assert isinstance(verify, Verify)
    assert e.verified(False) == [Sync(0, b"\x66" * 32)]
    assert e.stats["verify_mismatch"] == 1

    e = engine_for(1)
    twice = ann(2, tag=b"second")
    contribute_all(e, 1, (1, 2))
    e.announcement_fetched(twice, twice.payload_hash, 2.0)  # committed, so it is kept
    e.fetched(twice.payload_hash, True, 2.1)
    c = RoundCommitment(0, ADDRS[2], BASE, b"\x66" * 32, b"", tuple(sorted(
        [ann(2).payload_hash, twice.payload_hash])), 9)
    assert e.committed(c, 3.0) == [Sync(0, b"\x66" * 32)]
    assert e.stats["invalid_commitment"] == 1


def test_a_commitment_heard_twice_is_verified_once():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    c = RoundCommitment(0, ADDRS[1], BASE, b"\x66" * 32, b"", tuple(sorted(
        [ann(1).payload_hash, ann(2).payload_hash])), 9)
    (verify,) = e.committed(c, 3.0)  # the committer's own receipt
    assert isinstance(verify, Verify)
    assert e.committed(c, 3.1) == []  # the chain's event, while verifying
    assert e.verified(True) == []
    assert e.committed(c, 3.2) == []  # ... and after: still nothing to do
    late = ann(3)  # an announcement after the round was settled starts no second check
    assert not [a for a in e.announced(late, 3.3) if isinstance(a, Verify)]
    assert e.stats["verify_mismatch"] == 0 and e.stats["sync"] == 0


def test_commitments_ahead_of_us_or_on_another_base_mean_sync():
    e = engine_for(1)
    ahead = RoundCommitment(4, ADDRS[0], b"\x01" * 32, b"\x02" * 32, b"", (), 9)
    assert e.committed(ahead, 1.0) == [Sync(4, b"\x02" * 32)]
    old = RoundCommitment(0, ADDRS[0], BASE, b"\x02" * 32, b"", (), 9)
    e2 = engine_for(1, round_=3)
    assert e2.committed(old, 1.0) == []


def test_own_announcement_is_repeated_until_the_round_is_committed():
    e = engine_for(2)
    mine = ann(2)
    e.contributed(mine, 10.0)
    assert Announce(mine) not in e.tick(14.9)
    assert Announce(mine) in e.tick(15.0)
    assert Announce(mine) not in e.tick(16.0)


def test_failed_fetches_are_retried_after_a_pause():
    e = engine_for(0)
    a = ann(1)
    (fetch,) = e.announced(a, 1.0)
    assert e.tick(1.5) == []  # in flight: not asked twice
    assert e.fetched(a.payload_hash, False, 2.0) == []
    assert fetch not in e.tick(2.5)
    assert fetch in e.tick(3.0)


def test_an_undecodable_payload_is_dropped_for_good():
    e = engine_for(0)
    a = ann(1)
    e.announced(a, 1.0)
    assert e.payload_invalid(a.payload_hash) == []
    assert e.check(a) == "bad_payload"
    assert e.announcement(a.payload_hash) is None
