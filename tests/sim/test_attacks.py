"""No single vehicle can take over the fleet (round-v2.md): one libp2p fleet test per attack.

Each fleet runs real hosts on 127.0.0.1 and a real EVM; the attacker holds a registered key
(or none at all) and does what a compromised vehicle can. Each test ends with every honest
vehicle on a model hash it verified itself, equal to the chain's final model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import replace

import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from agent.p2p import announce
from agent.p2p.announce import Announcement
from agent.p2p.fetch import FetchError
from agent.p2p.identity import Identity
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import Kind
from agent.swarm.driver import Vehicle
from agent.swarm.engine import Commit
from chain.errors import LedgerError, LedgerRevert
from chain.launch import Anvil
from chain.ledger import Entry, RoundCommitment
from sim.hostile import hog_and_flood, hostile_node, silent_fetcher
from sim.netfleet import NetFleet, NetFleetConfig
from tests.sim.harness import (
    SMALL,
    assert_fleet_agrees,
    final_commitments,
    fleet_data,
    run_fleet,
    wait_until,
)

pytestmark = pytest.mark.slow

# Short slots: a silent or hostile slot holder costs seconds, not minutes.
FAST = NetFleetConfig(round_timeout=3, fallback_slot=2, finalize_window=4)


def honest_agree(fleet: NetFleet, honest: list[Vehicle]) -> None:
    """Every honest vehicle ends on the chain's final model, which it verified itself."""
    chain = fleet.ledger().status().latest_model
    assert all(v.model_hash == chain for v in honest)
    assert all(v.last_round is not None and v.last_round.verified for v in honest)
    assert len(final_commitments(fleet)) == fleet.cfg.rounds


def senders(c: RoundCommitment) -> set[str]:
    return {e.sender for e in c.contributions}


async def drain(node: Node, seen: list[Announcement]) -> None:
    async for ann in node.announcements:
        seen.append(ann)


def test_a_junk_commit_out_of_its_slot_is_refused(data):
    fleet = NetFleet(replace(SMALL, vehicles=4), fleet_data(data, 4), FAST)
    rival = fleet.ledger(fleet.identities[3].account)
    refused: list[str] = []

    async def attack(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        while not all(v.done.is_set() for v in vehicles):
            st = await trio.to_thread.run_sync(rival.status, limiter=fleet.chain_lane)
            def holders() -> set[str]:  # around now: the next block's time is not known
                t = rival.head_time()[1]
                return {rival.contract.functions.slot_holder(t + d).call() for d in range(-2, 4)}

            near = await trio.to_thread.run_sync(holders, limiter=fleet.chain_lane)
            if rival.account.address not in near:  # out of its slot, with any entries it likes
                entries = [Entry(x.address, 1, os.urandom(32)) for x in fleet.identities[:3]]
                try:
                    await trio.to_thread.run_sync(rival.commit_round, st.rounds_final,
                                                  st.latest_model, os.urandom(32), entries,
                                                  limiter=fleet.chain_lane)
                except LedgerRevert as e:
                    refused.append(e.reason)
            await trio.sleep(0.3)

    vehicles = run_fleet(fleet, attack, n=3)
    # Refused for its slot; or, racing the round, for a live commit or a round already final.
    assert any("not this vehicle's slot" in r for r in refused)
    assert all(any(k in r for k in ("slot", "awaiting quorum", "already final"))
               for r in refused)
    assert not [c for c in fleet.ledger().commitments(0) if c.committer == rival.account.address]
    honest_agree(fleet, vehicles)


def test_a_committer_that_commits_a_wrong_model_never_makes_it_final(data):
    fleet = NetFleet(replace(SMALL, vehicles=4, rounds=5), fleet_data(data, 4), FAST)
    vehicles = [fleet.vehicle(i) for i in range(4)]
    liar = vehicles[3]
    lies: list[bytes] = []

    async def commit_junk(a: Commit) -> None:  # merges nothing, names a model nobody gets
        junk = os.urandom(32)
        entries = [Entry(x.sender, x.samples, x.payload_hash) for x in a.contributions]
        try:
            c = await liar.chain.run(liar.chain.ledger.commit_round, a.round, a.base_hash,
                                     junk, entries)
        except LedgerError:
            liar._engine.commit_failed(liar._now())
            return
        lies.append(junk)
        liar._act(liar._engine.committed(c, liar._now()))

    liar._commit = commit_junk  # type: ignore[method-assign]
    run_fleet(fleet, vehicles=vehicles)
    finals = {f.model_hash for f in fleet.ledger().finals(0)}
    assert lies and not finals & set(lies)
    honest = vehicles[:3]
    assert all(v.engine is not None and v.engine.stats["verify_mismatch"] >= 1
               and v.engine.stats["commit_expired"] >= 1 for v in honest)
    honest_agree(fleet, honest)


def test_front_running_with_a_higher_fee_takes_no_round_on_anvil(data, tmp_path):
    with Anvil(tmp_path / "anvil.json") as node:
        fleet = NetFleet(replace(SMALL, vehicles=4), fleet_data(data, 4),
                         replace(FAST, rpc_url=node.url))
        w3, rival = fleet.w3, fleet.identities[3].account
        contract = fleet.ledger().contract
        honest_fee = w3.eth.gas_price
        mined: list[int] = []

        def front_run(round_: int, base: bytes) -> None:
            """A commit with 100x the fee, gas fixed (no estimate to refuse it first)."""
            entries = [(x.address, 1, os.urandom(32)) for x in fleet.identities[:2]]
            entries.sort(key=lambda e: int(e[0], 16))
            fee = 100 * honest_fee  # (not gas_price: anvil raises it after each of ours)
            tx = contract.functions.commit_round(round_, base, os.urandom(32), entries
                                                 ).build_transaction({
                                                     "from": rival.address, "gas": 600_000,
                                                     "maxFeePerGas": fee,
                                                     "maxPriorityFeePerGas": fee,
                                                     "nonce": w3.eth.get_transaction_count(
                                                         rival.address),
                                                     "chainId": w3.eth.chain_id})
            h = w3.eth.send_raw_transaction(rival.sign_transaction(tx).raw_transaction)
            mined.append(w3.eth.wait_for_transaction_receipt(h, timeout=30)["status"])

        async def attack(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery
                         ) -> None:
            ledger = fleet.ledger()
            while not all(v.done.is_set() for v in vehicles):
                st = await trio.to_thread.run_sync(ledger.status)
                await trio.to_thread.run_sync(front_run, st.rounds_final, st.latest_model)
                await trio.sleep(0.2)

        vehicles = run_fleet(fleet, attack, n=3)
        assert mined and set(mined) == {0}  # every front-run was mined, and reverted
        assert not [c for c in fleet.ledger().commitments(0) if c.committer == rival.address]
        honest_agree(fleet, vehicles)


def test_an_inflated_sample_count_is_capped(data):
    fleet = NetFleet(replace(SMALL, vehicles=4), fleet_data(data, 4), FAST)
    vehicles = [fleet.vehicle(i) for i in range(4)]
    vehicles[3].learner.samples = 2**32 - 1  # it claims every sample there could be
    run_fleet(fleet, vehicles=vehicles)
    liar = fleet.identities[3].address
    claimed = [e.samples for c in final_commitments(fleet) for e in c.contributions
               if e.sender == liar]
    assert claimed and set(claimed) == {2**32 - 1}  # bound by the commitment, as signed ...
    honest = max(v.learner.samples for v in vehicles[:3])
    from models.merge import cap_samples  # ... and weighed as a median vehicle at most
    for c in final_commitments(fleet):
        assert max(cap_samples([e.samples for e in c.contributions])) <= honest
    assert_fleet_agrees(fleet, vehicles)


def test_a_payload_copied_under_another_sender_is_never_credited_to_it(data):
    fleet = NetFleet(replace(SMALL, vehicles=4), fleet_data(data, 4), FAST)
    copier = fleet.identities[3]
    copied: set[bytes] = set()

    async def attack(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        node = hostile_node(fleet, 3)
        seen: list[Announcement] = []
        async with node.running(lambda ann: None), trio.open_nursery() as inner:
            inner.start_soon(drain, node, seen)
            while not all(v.done.is_set() for v in vehicles):
                for a in [a for a in seen if a.payload_hash not in copied]:
                    copy = announce.sign(copier, fleet.fleet, a.round, a.base_hash,
                                         a.payload_hash, a.size, a.samples, a.loss)
                    await node.pubsub.publish(node.topic, copy.raw)
                    copied.add(a.payload_hash)
                await trio.sleep(0.05)
            inner.cancel_scope.cancel()

    vehicles = run_fleet(fleet, attack, n=3)
    assert copied
    for c in final_commitments(fleet):
        assert copier.address not in senders(c)
        assert senders(c) == {v.address for v in vehicles}  # no honest contribution dropped
    stats = [v.node.stats + v.engine.stats for v in vehicles if v.engine]
    assert sum(s["announce_rejected_copied_payload"] + s["payload_invalid"] for s in stats) >= 1
    honest_agree(fleet, vehicles)


def test_a_revoked_vehicle_is_dropped_at_once_though_it_keeps_sending(data):
    fleet = NetFleet(replace(SMALL, vehicles=4, rounds=5), fleet_data(data, 4), FAST)
    vehicles = [fleet.vehicle(i) for i in range(3)]
    revoked = fleet.vehicle(3)
    operator = fleet.ledger(fleet.operator)
    at: dict[str, int] = {}

    async def revoke_after_round_1(fleet: NetFleet, honest: list[Vehicle],
                                   nursery: trio.Nursery) -> None:
        scope = trio.CancelScope()
        nursery.start_soon(_run_until, revoked, scope)
        await wait_until(lambda: all(v.last_round is not None and v.last_round.round >= 1
                                     for v in honest))
        await trio.to_thread.run_sync(operator.revoke, revoked.address,
                                      limiter=fleet.chain_lane)
        at["round"] = await trio.to_thread.run_sync(lambda: operator.status().rounds_final,
                                                    limiter=fleet.chain_lane)
        await wait_until(lambda: all(v.done.is_set() for v in honest))
        scope.cancel()  # it never stopped on its own: it kept announcing to the end

    run_fleet(fleet, revoke_after_round_1, vehicles=vehicles)
    later = [c for c in final_commitments(fleet) if c.round > at["round"]]
    assert later and all(revoked.address not in senders(c) for c in later)
    assert all(senders(c) == {v.address for v in vehicles} for c in later)
    stats = [v.node.stats + v.engine.stats for v in vehicles if v.engine]
    assert sum(s["announce_rejected_unregistered"] + s["connection_refused_not_registered"]
               for s in stats) >= 1
    honest_agree(fleet, vehicles)


async def _run_until(v: Vehicle, scope: trio.CancelScope) -> None:
    with scope:
        await v.run()


def test_a_vehicle_registered_mid_run_contributes_within_two_rounds(data):
    fleet = NetFleet(replace(SMALL, vehicles=4, rounds=6), fleet_data(data, 4), FAST)
    operator = fleet.ledger(fleet.operator)
    newcomer = fleet.identities[3].address
    operator.revoke(newcomer)  # not (yet) a member: it runs, but nobody admits it
    at: dict[str, int] = {}

    async def register_after_round_1(fleet: NetFleet, vehicles: list[Vehicle],
                                     nursery: trio.Nursery) -> None:
        await wait_until(lambda: all(v.last_round is not None and v.last_round.round >= 1
                                     for v in vehicles[:3]))
        await trio.to_thread.run_sync(operator.register, newcomer, limiter=fleet.chain_lane)
        at["round"] = await trio.to_thread.run_sync(lambda: operator.status().rounds_final,
                                                    limiter=fleet.chain_lane)

    vehicles = run_fleet(fleet, register_after_round_1)
    joined = [c.round for c in final_commitments(fleet) if newcomer in senders(c)]
    assert joined and min(joined) <= at["round"] + 2
    assert not [c for c in final_commitments(fleet) if c.round < at["round"]
                and newcomer in senders(c)]
    assert_fleet_agrees(fleet, vehicles)


def test_an_unregistered_peer_can_neither_connect_nor_fetch(data):
    fleet = NetFleet(replace(SMALL, vehicles=3, rounds=3), fleet_data(data, 3), FAST)
    result: dict[str, object] = {}
    tried = trio.Event()

    async def stranger(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        target = vehicles[0]
        await wait_until(lambda: target.engine is not None)
        me = Identity.from_secret(hashlib.sha256(b"stranger").digest())
        node = Node(me, fleet.fleet, NodeConfig(bootstrap=(fleet.bootstrap[0],)))
        node.set_allowed(x.address for x in fleet.identities)  # it would talk to anyone
        async with node.running(lambda ann: None):
            info = info_from_p2p_addr(multiaddr.Multiaddr(fleet.bootstrap[0]))
            for _ in range(5):
                with contextlib.suppress(Exception):  # refused: what we want
                    await node.host.connect(info)
            try:
                await node.fetch(Kind.MODEL, target.model_hash, 8 + 4 * target.layout.size)
                result["fetched"] = True
            except FetchError as e:
                result["fetch_error"] = str(e)
        tried.set()

    vehicles = [fleet.vehicle(i) for i in range(3)]
    last_round = vehicles[0]._adopt

    async def hold_the_last_round(model, done, opened_at):  # type: ignore[no-untyped-def]
        if done.round + 1 >= fleet.cfg.rounds:
            await tried.wait()  # the fleet stays up until the stranger has tried everything
        await last_round(model, done, opened_at)

    vehicles[0]._adopt = hold_the_last_round  # type: ignore[method-assign]
    run_fleet(fleet, stranger, vehicles=vehicles)
    assert "fetched" not in result and result["fetch_error"]
    assert vehicles[0].node.stats["connection_refused_not_registered"] >= 1
    assert_fleet_agrees(fleet, vehicles)


# --- resource attacks: nothing honest waits on them (benchmarks/attacks.py times the round) --

def test_silent_fetchers_slot_hogs_and_floods_do_not_slow_the_round(data):
    fleet = NetFleet(replace(SMALL, vehicles=5, rounds=5), fleet_data(data, 5), FAST)
    report: dict[str, int] = {}

    async def attack(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        done = trio.Event()  # vehicles 3 and 4: registered, hostile
        async with trio.open_nursery() as inner:
            inner.start_soon(silent_fetcher, fleet, 3, done)
            inner.start_soon(hog_and_flood, fleet, 4, vehicles, report, done)
            await wait_until(lambda: all(v.done.is_set() for v in vehicles))
            done.set()

    vehicles = run_fleet(fleet, attack, n=3)
    assert report["flood"] >= 1000 and report["hog_streams"] >= 1
    honest = {v.address for v in vehicles}
    assert all(senders(c) == honest for c in final_commitments(fleet))
    stats = [v.node.stats for v in vehicles]
    assert sum(s["peer_banned_invalid_gossip"] + s["peer_banned_gossip_flood"]
               for s in stats) >= 1
    assert sum(s["fetch_busy"] for s in stats) >= 1
    honest_agree(fleet, vehicles)
