"""A seeding node: the operator's (or any observer's) libp2p node that serves release files to
the fleet over fetch-v1, so that a release reaches vehicles without a mirror
(``swarmdrive release seed``, docs/spec/ota-v1.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import ContentStore, Kind
from agent.swarm.chainview import AsyncLedger

log = logging.getLogger(__name__)

MEMBERS_POLL_S = 10.0


async def seed(identity: Identity, fleet: Fleet, chain: AsyncLedger, files: Mapping[bytes, bytes],
               listen: str, bootstrap: tuple[str, ...],
               started: trio.Event | None = None) -> None:
    """Serve ``files`` (sha256 -> bytes) to the fleet's members until cancelled; the members
    (vehicles and observers) are read from the chain every MEMBERS_POLL_S."""
    store = ContentStore(max_bytes=sum(len(b) for b in files.values()) + (64 << 20))
    for key, data in files.items():
        store.put(Kind.RELEASE, data, key=key, pin=True)
    node = Node(identity, fleet, NodeConfig(listen=listen, bootstrap=bootstrap), store=store)
    node.set_allowed(await _members(chain))
    async with node.running(None):  # no gossip: it only serves files
        log.info("seeding peer_id=%s addrs=%s files=%d", node.peer_id, ",".join(node.addrs),
                 len(files))
        if started is not None:
            started.set()
        while True:
            await trio.sleep(MEMBERS_POLL_S)
            try:
                node.set_allowed(await _members(chain))
            except Exception as e:  # a chain that is away: serve whom we knew
                log.warning("members_poll_failed error=%s: %s", type(e).__name__, e)
            log.info("seeding peers=%d served=%d", len(node.connected()),
                     node.stats["fetch_served"])


async def _members(chain: AsyncLedger) -> list[str]:
    ledger = chain.ledger
    return [*await chain.run(ledger.vehicles), *await chain.run(ledger.observers)]
