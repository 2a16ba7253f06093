"""The round engine's rules (round-v2.md), without sockets, threads or a chain."""

from __future__ import annotations

import hashlib

import pytest

from agent.p2p import attest
from agent.p2p.announce import Announcement, Fleet, sign
from agent.p2p.identity import Identity
from agent.swarm.engine import (
    Adopt,
    Announce,
    Attest,
    Commit,
    Engine,
    EngineConfig,
    Fetch,
    FetchAnnouncement,
    Finalize,
    Sync,
    Train,
    Verify,
)
from chain.ledger import ChainParams, Entry, RoundCommitment, RoundFinal

FLEET = Fleet(1337, b"\x42" * 20)
BASE = hashlib.sha256(b"genesis").digest()
MODEL = b"\x66" * 32
IDS = [Identity.from_secret(hashlib.sha256(b"vehicle %d" % i).digest()) for i in range(4)]
ADDRS = tuple(i.address for i in IDS)  # the contract's order (vehicle_at)
PARAMS = ChainParams(min_peers=2, quorum=3, round_timeout=60, fallback_slot=10,
                     finalize_window=30)
CFG = EngineConfig(reannounce_s=5, retry_s=1, margin_s=1)


def ann(i: int, round_: int = 0, base: bytes = BASE, tag: bytes = b"",
        samples: int | None = None) -> Announcement:
    payload = hashlib.sha256(b"payload %d %d" % (i, round_) + tag).digest()
    return sign(IDS[i], FLEET, round_, base, payload, 1000 + i,
                50 + i if samples is None else samples, 0.5)


def engine_for(i: int, alive: tuple[int, ...] = (0, 1, 2, 3), params: ChainParams = PARAMS,
               round_: int = 0) -> Engine:
    e = Engine(ADDRS[i], ADDRS, params, CFG, alive=frozenset(ADDRS[j] for j in alive if j != i))
    assert e.start(round_, BASE, opened_at=0.0, now=0.0) == [Train(round_, BASE)]
    return e


def contribute_all(e: Engine, me: int, who: tuple[int, ...], now: float = 1.0) -> None:
    for j in who:
        a = ann(j)
        if j == me:
            assert e.contributed(a, now) == [Announce(a)]
        else:
            assert e.announced(a, now) == [Fetch(a.payload_hash, a.size, a.sender)]
            assert e.fetched(a.payload_hash, True, now) == []


def commitment(who: tuple[int, ...], committer: int = 0, model: bytes = MODEL, at: float = 5.0,
               entries: list[Entry] | None = None) -> RoundCommitment:
    es = entries if entries is not None else [Entry(ADDRS[j], ann(j).samples, ann(j).payload_hash)
                                              for j in who]
    es.sort(key=lambda x: int(x.sender, 16))
    return RoundCommitment(0, ADDRS[committer], BASE, model, b"", tuple(es), int(at), 9)


def commits(actions: list) -> list[Commit]:
    return [a for a in actions if isinstance(a, Commit)]


# --- committer slots ---------------------------------------------------------------------------

def test_the_slot_holder_commits_once_every_live_vehicle_contributed():
    e = engine_for(0)  # round 0: index 0 holds the first slot
    contribute_all(e, 0, (0, 1, 2))
    assert commits(e.tick(2.0)) == []  # vehicle 3 is connected: wait for it
    contribute_all(e, 0, (3,))
    (commit,) = commits(e.tick(3.0))
    senders = [int(a.sender, 16) for a in commit.contributions]
    assert senders == sorted(senders) and len(senders) == 4  # the canonical order
    assert commit.round == 0 and commit.base_hash == BASE
    assert commits(e.tick(4.0)) == []  # once


def test_slots_follow_the_contract_rule():
    e = engine_for(1)
    p = PARAMS
    assert e.slot(0.0) == (ADDRS[0], p.round_timeout + p.fallback_slot)  # first slot: T + F
    assert e.slot(p.round_timeout + p.fallback_slot - 0.5)[0] == ADDRS[0]
    assert e.slot(p.round_timeout + p.fallback_slot)[0] == ADDRS[1]
    assert e.slot(p.round_timeout + 3 * p.fallback_slot)[0] == ADDRS[3]
    assert e.slot(p.round_timeout + 4 * p.fallback_slot)[0] == ADDRS[0]  # round the order


def test_out_of_slot_vehicles_never_commit_and_fallbacks_commit_at_their_slot():
    e = engine_for(1)
    contribute_all(e, 1, (0, 1, 2, 3))
    start = PARAMS.round_timeout + PARAMS.fallback_slot
    assert commits(e.tick(start - 0.1)) == []
    assert commits(e.tick(start))  # its own slot, with min_peers
    e = engine_for(2)
    contribute_all(e, 2, (1, 2))
    assert commits(e.tick(start + PARAMS.fallback_slot - CFG.margin_s + 0.5)) == []  # too late
    assert commits(e.tick(start + PARAMS.fallback_slot))


def test_below_min_peers_nobody_commits_even_after_the_deadline():
    e = engine_for(0, alive=(0,), params=ChainParams(3, 3, 5, 5, 30))
    contribute_all(e, 0, (0,))
    assert commits(e.tick(6.0)) == []


def test_a_silent_connected_vehicle_is_dropped_at_the_deadline():
    e = engine_for(0)
    contribute_all(e, 0, (0, 1, 2))
    assert commits(e.tick(PARAMS.round_timeout - 1)) == []
    (commit,) = commits(e.tick(PARAMS.round_timeout))
    assert len(commit.contributions) == 3


def test_an_expired_commit_hands_the_round_to_the_next_vehicle():
    e = engine_for(1)
    contribute_all(e, 1, (0, 1, 2, 3))
    e.committed(commitment((0, 1), at=5.0, model=b"\x13" * 32), 5.0)
    assert commits(e.tick(6.0)) == []  # a commit is live
    expiry = 5.0 + PARAMS.finalize_window
    (commit,) = commits(e.tick(expiry))  # from the expiry, one vehicle further on: us
    assert e.stats["commit_expired"] == 1 and len(commit.contributions) == 4


# --- announcements -----------------------------------------------------------------------------

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


def test_nothing_is_kept_before_the_first_round_opens():
    e = Engine(ADDRS[0], ADDRS, PARAMS, CFG)
    assert e.check(ann(1, round_=10**6)) == "not_ready"


def test_replays_equivocation_and_copies_are_ignored_and_counted():
    e = engine_for(0, round_=2)
    assert e.announced(ann(1, round_=1), 1.0) == []
    assert e.stats["announce_rejected_stale_round"] == 1
    first = ann(1, round_=2)
    assert e.announced(first, 1.0)
    assert e.announced(first, 1.5) == []  # the same one again: a duplicate, not a second vote
    assert e.stats["announce_duplicate"] == 1
    assert e.announced(ann(1, round_=2, tag=b"other"), 2.0) == []
    assert e.stats["announce_rejected_equivocation"] == 1
    copy = sign(IDS[2], FLEET, 2, BASE, first.payload_hash, 10, 10, 0.1)
    assert e.announced(copy, 2.5) == []
    assert e.stats["announce_rejected_copied_payload"] == 1


def test_a_payload_that_disowns_its_announcer_drops_that_announcement_only():
    e = engine_for(0)
    honest = ann(1)
    copy = sign(IDS[2], FLEET, 0, BASE, honest.payload_hash, 10, 10, 0.1)
    e.announced(copy, 1.0)  # the copy arrived first
    assert e.payload_invalid(copy.payload_hash, copy.sender) == []
    assert e.check(copy) == "bad_payload" and e.check(honest) is None
    assert e.announced(honest, 2.0)


def test_next_round_announcements_wait_for_their_round():
    e = engine_for(0)
    early = ann(1, round_=1, base=b"\x09" * 32)
    assert e.announced(early, 1.0) == []  # kept, not fetched yet
    actions = e.start(1, b"\x09" * 32, 2.0, 2.0)
    assert Fetch(early.payload_hash, early.size, early.sender) in actions


# --- verification and attestation --------------------------------------------------------------

def test_a_commitment_is_verified_on_exactly_its_entries_and_then_attested():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    a0, a3 = ann(0), ann(3)
    c = commitment((0, 1, 3))
    actions = e.committed(c, 5.0)
    # a0 and a3 never reached us by gossip: fetch their signed announcements, then them.
    assert FetchAnnouncement(a0.payload_hash) in actions
    assert FetchAnnouncement(a3.payload_hash) in actions
    assert e.announcement_fetched(a3, a3.payload_hash, 5.1) == [
        Fetch(a3.payload_hash, a3.size, a3.sender)]
    assert e.fetched(a3.payload_hash, True, 5.2) == []
    assert e.announcement_fetched(a0, a0.payload_hash, 5.3) == [
        Fetch(a0.payload_hash, a0.size, a0.sender)]
    (verify,) = e.fetched(a0.payload_hash, True, 5.4)
    assert isinstance(verify, Verify)
    assert [a.sender for a in verify.contributions] == [x.sender for x in c.contributions]
    assert e.verified(MODEL, 6.0) == [Attest(0, MODEL)]
    assert e.stats["rounds_verified"] == 1


@pytest.mark.parametrize("entries, reason", [
    ([Entry(ADDRS[1], 2**32 - 1, ann(1).payload_hash),
      Entry(ADDRS[2], ann(2).samples, ann(2).payload_hash)], "samples"),
    ([Entry(ADDRS[1], ann(1).samples, ann(1).payload_hash),
      Entry(ADDRS[2], ann(1).samples, ann(1).payload_hash)], None),
])
def test_entries_must_be_what_their_senders_signed(entries, reason):
    e = engine_for(3)
    contribute_all(e, 3, (1, 2))
    assert not [a for a in e.committed(commitment((), entries=entries), 5.0)
                if isinstance(a, Verify)]
    if reason:
        assert e.stats[f"invalid_commitment_{reason}"] == 1
    assert not [a for a in e.tick(6.0) if isinstance(a, Attest)]


def test_a_mismatch_attests_nothing_and_keeps_the_last_final_model():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    (verify,) = e.committed(commitment((1, 2)), 5.0)
    assert isinstance(verify, Verify)
    assert e.verified(b"\x99" * 32, 6.0) == []
    assert e.stats["verify_mismatch"] == 1
    assert not [a for a in e.tick(20.0) if isinstance(a, Attest | Adopt | Sync)]
    # Should a quorum finalise it anyway, the vehicle fetches the final model and counts it.
    f = RoundFinal(0, MODEL, ADDRS[:3], 30, 10)
    assert e.finalized(f, 30.0) == [Sync(0, MODEL, 30)]
    assert e.stats["final_overrode_our_check"] == 1


def test_a_commitment_heard_twice_is_verified_once():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    c = commitment((1, 2), committer=1)
    (verify,) = e.committed(c, 5.0)  # the committer's own receipt
    assert isinstance(verify, Verify)
    assert e.committed(c, 5.1) == []  # the chain's event, while verifying
    assert e.verified(MODEL, 6.0) == [Attest(0, MODEL)]
    assert e.committed(c, 6.2) == []  # ... and after: still nothing to do
    late = ann(3)  # an announcement after the round was settled starts no second check
    assert not [a for a in e.announced(late, 6.3) if isinstance(a, Verify)]


# --- finality ----------------------------------------------------------------------------------

def attestation(i: int, model: bytes = MODEL, round_: int = 0) -> attest.Attestation:
    return attest.sign(IDS[i], FLEET, round_, model)


def test_the_committer_finalises_once_a_quorum_attested():
    e = engine_for(0)
    contribute_all(e, 0, (0, 1, 2, 3))
    e.committed(commitment((0, 1, 2, 3), committer=0), 5.0)
    assert e.verified(MODEL, 5.5) == [Attest(0, MODEL)]
    assert e.attested(attestation(0), 5.6) == []
    assert e.attested(attestation(1), 5.7) == []
    assert e.attested(attestation(3, model=b"\x01" * 32), 5.7) == []  # another model
    (fin,) = e.attested(attestation(2), 5.8)
    assert isinstance(fin, Finalize) and set(fin.signatures) == set(ADDRS[:3])
    assert e.attested(attestation(3), 5.9) == []  # already finalising


def test_other_vehicles_finalise_in_turn_if_the_committer_does_not():
    e = engine_for(2)
    contribute_all(e, 2, (0, 1, 2))
    e.committed(commitment((0, 1, 2), committer=0), 5.0)
    e.verified(MODEL, 5.5)
    for i in (0, 1, 2):
        e.attested(attestation(i), 6.0)
    turn = 2  # two places after the committer in the order
    assert not [a for a in e.tick(6.0 + turn * PARAMS.fallback_slot - 0.1)
                if isinstance(a, Finalize)]
    assert [a for a in e.tick(6.0 + turn * PARAMS.fallback_slot) if isinstance(a, Finalize)]


def test_a_signer_counts_for_one_model_only_so_the_table_stays_bounded():
    e = engine_for(0)
    for k in range(100):  # a stolen key signing model after model
        e.attested(attestation(3, model=k.to_bytes(32, "big")), 1.0)
    assert sum(len(s) for s in e._sigs.values()) == 1


def test_attestations_from_strangers_or_other_rounds_do_not_count():
    e = engine_for(0)
    stranger = attest.sign(STRANGER, FLEET, 0, MODEL)
    assert e.check_attestation(stranger) == "unregistered"
    assert e.check_attestation(attestation(1, round_=5)) == "other_round"
    assert e.attested(stranger, 1.0) == []
    assert e.stats["attestation_rejected_unregistered"] == 1


def test_a_final_round_is_adopted_only_as_verified_or_synced():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    e.committed(commitment((1, 2)), 5.0)
    e.verified(MODEL, 6.0)
    f = RoundFinal(0, MODEL, ADDRS[:3], 31, 10)
    assert e.finalized(f, 31.0) == [Adopt(f)]
    assert e.finalized(f, 31.5) == []  # heard twice
    ahead = RoundFinal(4, b"\x02" * 32, ADDRS[:3], 99, 20)
    assert e.finalized(ahead, 99.0) == [Sync(4, b"\x02" * 32, 99)]


def test_own_announcement_is_repeated_at_doubling_gaps_until_the_round_is_committed():
    e = engine_for(2)
    mine = ann(2)
    e.contributed(mine, 10.0)
    sent = [t for t in range(10, 200) if Announce(mine) in e.tick(float(t) + 0.5)]
    # After 5 s, then gaps of 10, 20, 40 and at most reannounce_max_s (60).
    assert sent == [15, 25, 45, 85, 145]
    e.committed(commitment((1, 2), at=200.0), 200.0)
    assert not [t for t in range(200, 255) if Announce(mine) in e.tick(float(t))]


def test_failed_fetches_are_retried_after_a_pause():
    e = engine_for(0)
    a = ann(1)
    (fetch,) = e.announced(a, 1.0)
    assert e.tick(1.5) == []  # in flight: not asked twice
    assert e.fetched(a.payload_hash, False, 2.0) == []
    assert fetch not in e.tick(2.5)
    assert fetch in e.tick(3.0)
    # Each failure in a row doubles the pause (1, 2, 4, then at most retry_max_s = 8 s), so
    # busy peers are not asked ever faster; a success starts again from retry_s.
    asked_at, now = [], 3.0
    for _ in range(5):
        assert e.fetched(a.payload_hash, False, now) == []
        now = next(t / 4 for t in range(int(now * 4) + 1, 400) if fetch in e.tick(t / 4))
        asked_at.append(now)
    assert asked_at == [5.0, 9.0, 17.0, 25.0, 33.0]


def test_membership_and_parameters_change_live():
    e = engine_for(0)
    contribute_all(e, 0, (0, 1, 2))
    e.set_committee(ADDRS[:2] + ADDRS[3:])  # vehicle 2 revoked
    assert e.check(ann(2)) == "unregistered"
    assert e.announcement_for(ann(2).payload_hash) is None  # its contribution is gone
    e.set_params(ChainParams(1, 2, 5, 5, 30))
    assert commits(e.tick(5.0))  # the new timeout applies at once


def test_a_round_final_while_we_still_merge_is_adopted_once_our_merge_agrees():
    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    (verify,) = e.committed(commitment((1, 2)), 5.0)
    assert isinstance(verify, Verify)
    f = RoundFinal(0, MODEL, ADDRS[:3], 31, 10)
    assert e.finalized(f, 6.0) == []  # the quorum was faster than our merge: finish it
    assert e.verified(MODEL, 6.5) == [Adopt(f)]
    assert e.stats["rounds_verified"] == 1 and e.stats["sync"] == 0

    e = engine_for(1)
    contribute_all(e, 1, (1, 2))
    e.committed(commitment((1, 2)), 5.0)
    e.finalized(f, 6.0)
    assert e.verified(b"\x99" * 32, 6.5) == [Sync(0, MODEL, 31)]
    assert e.stats["final_overrode_our_check"] == 1
