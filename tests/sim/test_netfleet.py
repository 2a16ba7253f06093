"""The fleet over libp2p: real hosts on 127.0.0.1, a real EVM, the daemon's round engine.

Each test runs a small fleet to the end and checks what the issue's "done means" asks: the
same model on every vehicle and on chain, equal to the in-memory transport; no remote peer can
crash a vehicle; forged, replayed and lying contributions never reach the merge; a vehicle that
dies mid-round is not waited for and catches up after a restart.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import replace

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils.varint import encode_uvarint

from agent.p2p.announce import Announcement, sign
from agent.p2p.identity import Identity
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import Kind
from agent.swarm.driver import Vehicle
from sim.fleet import run_swarm
from sim.netfleet import NetFleet, NetFleetConfig, run_swarm_p2p, summarise
from tests.sim.harness import (
    DEADLINE_S,
    SMALL,
    assert_fleet_agrees,
    final_commitments,
    fleet_data,
    run_fleet,
    wait_until,
)


def test_every_vehicle_ends_on_the_chain_model_and_matches_the_memory_transport(data):
    d = fleet_data(data, 3)
    # Quorum 3 of 3: no round is final before every vehicle checked it, so none may catch up
    # by fetching the model (which a slow vehicle may, and should, at a majority quorum).
    net = run_swarm_p2p(SMALL, d, NetFleetConfig(quorum=3))
    mem = run_swarm(SMALL, d)
    hashes = {v["model_hash"] for v in net.vehicles.values()}
    assert hashes == {net.chain_model_hash} == {mem.model_hash}
    assert [r.model_hash for r in net.rounds] == [r.model_hash for r in mem.rounds]
    assert all(r.contributions == 3 for r in net.rounds)
    assert len({r.committer for r in net.rounds}) > 1  # the committer rotates
    accs = {v["accuracy"] for v in net.vehicles.values()}
    assert accs == {mem.accuracy}
    # Every vehicle checked every commitment itself, and none disagreed.
    for stats in net.stats.values():
        assert stats.get("rounds_verified") == SMALL.rounds
        assert not stats.get("verify_mismatch") and not stats.get("invalid_commitment")


def test_vehicles_training_ahead_agree_on_every_round(data):
    d = fleet_data(data, 3)
    net = run_swarm_p2p(SMALL, d, NetFleetConfig(quorum=3, train_ahead=True))
    assert {v["model_hash"] for v in net.vehicles.values()} == {net.chain_model_hash}
    assert len(net.rounds) == SMALL.rounds
    # Steps ran while rounds were being committed, and every merge still checked out.
    assert sum(s.get("steps_ahead", 0) for s in net.stats.values()) > 0
    for stats in net.stats.values():
        assert stats.get("rounds_verified") == SMALL.rounds
        assert not stats.get("verify_mismatch") and not stats.get("train_failed")


def attacker_identity() -> Identity:
    return Identity.from_secret(hashlib.sha256(b"attacker").digest())


def hostile_host(name: bytes):
    kp = create_new_key_pair(hashlib.sha256(name).digest())
    sec = {NOISE_PROTOCOL_ID: NoiseTransport(kp, noise_privkey=new_x25519_key_pair().private_key)}
    return new_host(key_pair=kp, sec_opt=sec)


GARBAGE = [
    os.urandom(2048),  # noise
    b"\xff\xff\xff\xff\x0f" + os.urandom(64),  # a varint length of 4 GiB: an oversized frame
    b"\x80\x01" + b"\x00" * 10,  # says 128 bytes, sends 10, then the stream ends: truncated
    b"\x06\xff\xff\xff\xff\xff\xff",  # a complete frame that is not protobuf (DecodeError)
    b"\x04\x0a\x02\x08\xff",  # valid framing, protobuf with a truncated field
    b"SDF1\x01\x07" + b"\x00" * 32,  # a fetch request for an unknown kind
]


def crafted_rpcs(topic: str) -> list[bytes]:
    """Well-framed pubsub RPCs with hostile contents: bad keys, huge fields, odd controls."""
    rpcs = []
    for key in (os.urandom(33), b"\x08\x02\x12\x21" + os.urandom(33), b""):
        r = rpc_pb2.RPC()
        m = r.publish.add()
        m.topicIDs.append(topic)
        m.from_id, m.data, m.seqno = os.urandom(39), os.urandom(200), os.urandom(8)
        m.key, m.signature = key, os.urandom(64)
        rpcs.append(r)
    r = rpc_pb2.RPC()
    r.control.graft.add().topicID = topic
    ihave = r.control.ihave.add()
    ihave.topicID = topic
    ihave.messageIDs.append(os.urandom(5000))
    prune = r.control.prune.add()
    prune.topicID, prune.backoff = topic, 2**63
    peer = prune.peers.add()
    peer.peerID, peer.signedPeerRecord = os.urandom(10), os.urandom(50)
    rpcs.append(r)
    r = rpc_pb2.RPC()
    r.subscriptions.add(subscribe=True, topicid="x" * 100_000)
    r.senderRecord = os.urandom(300)
    rpcs.append(r)
    return [encode_uvarint(len(b)) + b for b in (r.SerializeToString() for r in rpcs)]


@pytest.mark.slow
def test_no_remote_peer_can_crash_a_vehicle(data):
    # The attacker is admitted (an observer the operator listed, or a stolen vehicle key):
    # strangers do not even get a stream (test_attacks.py).
    # Quorum 3 of 3: the vehicle under attack must verify every round itself, not catch up by
    # fetching a round the other two finalised without it (which it may, and should, do).
    fleet = NetFleet(replace(SMALL, rounds=5), fleet_data(data, 3),
                     NetFleetConfig(quorum=3, observers=(attacker_identity().address,)))
    report: dict[str, int] = {}

    async def attack(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        target = vehicles[0].node
        # The fleet is mid-round: the target has joined and hears its peers.
        await wait_until(lambda: vehicles[0].engine is not None and
                         len(target.connected()) >= 2)
        # Raw bytes at the TCP port, before any handshake.
        host, port = "127.0.0.1", int(target.addrs[0].split("/")[4])
        for junk in GARBAGE:
            with trio.move_on_after(2):
                stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(junk)
                await stream.aclose()
        attacker = hostile_host(b"attacker")
        async with attacker.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            await attacker.connect(info_from_p2p_addr(multiaddr.Multiaddr(target.addrs[0])))
            protocols = list(target.host.get_mux().get_protocols())
            report["protocols"] = len(protocols)
            for proto in protocols:
                for junk in GARBAGE + crafted_rpcs(target.topic):
                    with trio.move_on_after(3):
                        try:
                            s = await attacker.new_stream(target.peer_id, [proto])
                            await s.write(junk)
                            await s.close()
                        except Exception:  # the vehicle may reset us: that is its right
                            report["refused"] = report.get("refused", 0) + 1
                        report["attempts"] = report.get("attempts", 0) + 1

    vehicles = run_fleet(fleet, attack)
    per_protocol = len(GARBAGE) + len(crafted_rpcs("t"))
    assert report["protocols"] >= 4 and report["attempts"] == report["protocols"] * per_protocol
    assert {"/swarmdrive/fetch/1.0.0", "/meshsub/1.1.0"} <= set(
        vehicles[0].node.host.get_mux().get_protocols())
    stats = vehicles[0].node.stats
    assert stats["pubsub_bad_frame"] >= 1 and stats["fetch_bad_request"] >= 1
    assert stats["pubsub_bad_message"] >= 1
    assert all(v.engine is not None and v.engine.stats["rounds_verified"] == fleet.cfg.rounds
               and not v.engine.stats["verify_mismatch"] for v in vehicles)
    assert_fleet_agrees(fleet, vehicles)
    assert all(len(c.contributions) == 3 for c in final_commitments(fleet))


@pytest.mark.slow
def test_forged_replayed_and_lying_contributions_never_reach_the_merge(data):
    # Vehicle 3 is registered but hostile: the test drives its node by hand.
    fleet = NetFleet(replace(SMALL, vehicles=4, rounds=4), fleet_data(data, 4),
                     # min_peers = the honest vehicles: however slow the machine, a round
                     # commits only once all three are in; the short timeout only stops the
                     # committer waiting for the hostile one, which never contributes.
                     NetFleetConfig(min_peers=3, round_timeout=3, fallback_slot=2))
    honest = 3
    stranger = Identity.from_secret(hashlib.sha256(b"not registered").digest())
    # (kind, round first announced, payload hash) of everything the hostile node published
    sent: list[tuple[str, int, bytes]] = []

    async def hostile(fleet: NetFleet, vehicles: list[Vehicle], nursery: trio.Nursery) -> None:
        me = fleet.identities[honest]
        node = Node(me, fleet.fleet, NodeConfig(listen=f"/ip4/127.0.0.1/tcp/{fleet.ports[honest]}",
                                                bootstrap=fleet.bootstrap[:honest]))
        node.set_allowed(i.address for i in fleet.identities)
        seen: list[Announcement] = []
        async with node.running(lambda ann: None, lambda att: None):
            ledger = fleet.ledger()
            while not vehicles[0].done.is_set():
                while True:
                    try:
                        seen.append(node.announcements.receive_nowait())
                    except trio.WouldBlock:
                        break
                status = await trio.to_thread.run_sync(ledger.status)
                r, base = status.rounds_final, status.latest_model
                # 1. a well-formed announcement from a key the chain does not know
                forged = sign(stranger, fleet.fleet, r, base, os.urandom(32), 100, 10, 0.1)
                # 2. our own announcement, whose payload bytes do not match its hash
                claimed = hashlib.sha256(b"lie %d" % r).digest()
                node.store.put(Kind.DELTA, b"not the payload", key=claimed)
                lying = sign(me, fleet.fleet, r, base, claimed, 100, 10, 0.1)
                # 3. an honest vehicle's announcement from an earlier round, replayed
                old = [(a, "replayed") for a in seen if a.round < r][-1:]
                for ann, kind in [(forged, "forged"), (lying, "lying"), *old]:
                    await node.pubsub.publish(node.topic, ann.raw)  # past our own validator
                    sent.append((kind, ann.round, ann.payload_hash))
                await trio.sleep(0.5)

    vehicles = run_fleet(fleet, hostile, n=honest)
    assert {kind for kind, _, _ in sent} == {"forged", "lying", "replayed"}
    merged_in: dict[bytes, set[int]] = {}  # payload hash -> the rounds that merged it
    for c in fleet.ledger().commitments(0):
        for e in c.contributions:
            merged_in.setdefault(e.payload_hash, set()).add(c.round)
    # A replayed honest payload was rightly merged in the round it was first announced for
    # (when its sender was in the mesh); nothing published here is merged in any other round.
    for kind, first, h in sent:
        assert merged_in.get(h, set()) <= ({first} if kind == "replayed" else set()), kind
    assert all(len(c.contributions) == honest for c in final_commitments(fleet))
    stats = [v.node.stats + v.engine.stats for v in vehicles]
    assert all(s["announce_rejected_unregistered"] >= 1 for s in stats)
    assert sum(s["announce_rejected_stale_round"] for s in stats) >= 1
    assert sum(s["fetch_bad_payload"] for s in stats) >= 1
    assert all(s["rounds_verified"] == fleet.cfg.rounds and not s["verify_mismatch"]
               for s in stats)
    result = summarise(fleet, vehicles, [], 0.0)
    assert {v["model_hash"] for v in result.vehicles.values()} == {result.chain_model_hash}


@pytest.mark.slow
def test_a_vehicle_killed_mid_round_restarts_from_its_checkpoint_and_contributes_again(
        data, tmp_path):
    fleet = NetFleet(replace(SMALL, vehicles=4, rounds=8), fleet_data(data, 4),
                     NetFleetConfig(min_peers=3, state_dir=tmp_path, round_timeout=5,
                                    fallback_slot=3))
    victim, seen = 1, {}
    vehicles = [fleet.vehicle(i) for i in range(4)]
    ledger = fleet.ledger()
    in_round_2, release = threading.Event(), threading.Event()
    train = vehicles[victim].learner.contribute

    def contribute(base, base_hash, round_, local_steps, **kw):  # holds the victim in round 2
        if round_ == 2:
            in_round_2.set()
            release.wait(DEADLINE_S)
        return train(base, base_hash, round_, local_steps, **kw)

    vehicles[victim].learner.contribute = contribute  # type: ignore[method-assign]

    async def main() -> None:
        scopes: dict[int, trio.CancelScope] = {}

        async def run(i: int, v: Vehicle) -> None:
            with trio.CancelScope() as scope:
                scopes[i] = scope
                await v.run()

        with trio.fail_after(DEADLINE_S):
            async with trio.open_nursery() as nursery:
                for i, v in enumerate(vehicles):
                    nursery.start_soon(run, i, v)
                # Kill it while it trains round 2 (round 1 is checkpointed, nothing announced).
                await wait_until(in_round_2.is_set)
                scopes[victim].cancel()
                release.set()  # the abandoned training thread ends and frees the lane
                await wait_until(lambda: ledger.status().rounds_final >= 3)
                seen["round 2"] = final_commitments(fleet)[2]
                restarted = fleet.vehicle(victim)  # a new process would do the same
                seen["restored"] = restarted.model_hash
                vehicles[victim] = restarted
                nursery.start_soon(run, victim, restarted)
                for v in vehicles:
                    await v.done.wait()
                nursery.cancel_scope.cancel()

    trio.run(main)
    commits = final_commitments(fleet)
    round1 = commits[1]
    assert seen["restored"] == round1.model_hash  # the checkpoint is round 1's model
    assert len(seen["round 2"].contributions) == 3  # completed without the dead vehicle
    back = vehicles[victim]
    # It synced the current model by hash from its peers, then trained from there.
    assert back.node.stats["fetched"] >= 1 and min(back.timings) >= 3
    # It read the contract's events from the round it joined, not from block 0, and skipped
    # none that round needs.
    assert back.chain_from_block > 0
    assert all(c.round < min(back.timings) for c in ledger.commitments(0)
               if c.block < back.chain_from_block)
    # ... and contributed again: with four vehicles, four distinct senders include it.
    assert [c for c in commits[3:] if len(c.contributions) == 4]
    # With quorum 3 of 4, a vehicle still fetching when the round goes final adopts it by hash.
    assert_fleet_agrees(fleet, vehicles, verified=False)
