"""What a stolen vehicle key can do to a fleet's resources, for the attack tests and
benchmarks/attacks.py: a bare libp2p node under that key, peers that never answer a fetch,
peers that hold every serving slot, and a flood of invalid announcements."""

from __future__ import annotations

import hashlib
import os

import trio

from agent.p2p import announce
from agent.p2p.fetch import MAGIC, PROTOCOL, REQUEST, VERSION
from agent.p2p.identity import Identity
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import Kind
from agent.swarm.driver import Vehicle
from sim.netfleet import NetFleet

FLOOD_PER_S = 1000
HOGS_PER_VEHICLE = 8


def hostile_node(fleet: NetFleet, i: int, max_announcements_per_s: float = 200.0) -> Node:
    """Vehicle ``i``'s key in a bare node driven by hand (a stolen key)."""
    node = Node(fleet.identities[i], fleet.fleet, NodeConfig(
        listen=f"/ip4/127.0.0.1/tcp/{fleet.ports[i]}", bootstrap=fleet.bootstrap[:i],
        max_announcements_per_s=max_announcements_per_s))
    node.set_allowed(x.address for x in fleet.identities)
    return node


async def never_answer(stream: object) -> None:
    """A fetch handler that reads nothing and answers nothing."""
    await trio.sleep_forever()


async def silent_fetcher(fleet: NetFleet, i: int, until: trio.Event) -> None:
    """Vehicle ``i``'s key joins the fleet and answers no fetch, ever, until ``until``."""
    node = hostile_node(fleet, i)
    async with node.running(lambda ann: None):
        node.host.set_stream_handler(PROTOCOL, never_answer)
        await until.wait()


async def hog_and_flood(fleet: NetFleet, i: int, vehicles: list[Vehicle],
                        report: dict[str, int], until: trio.Event) -> None:
    """Vehicle ``i``'s key holds serving streams open on every vehicle and floods
    ``FLOOD_PER_S`` announcements a second, signed by nobody the fleet knows, until ``until``.
    Counts what it did in ``report`` (``hog_streams``, ``flood``)."""
    node = hostile_node(fleet, i, max_announcements_per_s=100_000.0)
    stranger = Identity.from_secret(hashlib.sha256(b"flood").digest())
    junk = announce.sign(stranger, fleet.fleet, 0, os.urandom(32), os.urandom(32), 100, 10, 0.1)
    async with node.running(lambda ann: None), trio.open_nursery() as inner:
        while len(node.connected()) < 2:
            await trio.sleep(0.02)

        async def hog(peer: object, key: bytes) -> None:
            while True:
                try:
                    s = await node.host.new_stream(peer, [PROTOCOL])  # type: ignore[arg-type]
                    await s.write(REQUEST.pack(MAGIC, VERSION, Kind.MODEL, key))
                    report["hog_streams"] = report.get("hog_streams", 0) + 1
                    await trio.sleep(30)  # never read the answer: hold the slot
                except Exception:  # refused or reset: ask again
                    await trio.sleep(0.5)

        for v in vehicles:
            for _ in range(HOGS_PER_VEHICLE):
                inner.start_soon(hog, v.node.peer_id, v.model_hash)
        while not until.is_set():
            for _ in range(FLOOD_PER_S // 10):
                await node.pubsub.publish(node.topic, junk.raw)
                report["flood"] = report.get("flood", 0) + 1
            await trio.sleep(0.1)
        inner.cancel_scope.cancel()
