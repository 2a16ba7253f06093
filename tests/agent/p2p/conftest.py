"""Real libp2p nodes on 127.0.0.1 for the p2p tests, run under trio."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from agent.p2p.node import Node, NodeConfig

FLEET = Fleet(1337, b"\x42" * 20)


def identity(name: str) -> Identity:
    return Identity.from_secret(hashlib.sha256(name.encode()).digest())


def accept_all(ann: object) -> None:
    return None


async def wait_for(pred, timeout: float = 60.0, what: str = "condition") -> None:
    # A hang guard, not a speed target: a loaded 2-core CI machine must meet it.
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.05)


@asynccontextmanager
async def chain_of_nodes(*names: str, validators=None) -> AsyncIterator[list[Node]]:
    """Nodes started in order, each bootstrapped to the one before it."""
    validators = validators or [accept_all] * len(names)
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        fleet = [identity(name).address for name in names]  # everyone admits everyone
        for name, validator in zip(names, validators, strict=True):
            boot = tuple(nodes[-1].addrs) if nodes else ()
            node = Node(identity(name), FLEET, NodeConfig(bootstrap=boot, redial_s=0.2))
            node.set_allowed(fleet)
            await stack.enter_async_context(node.running(validator))
            nodes.append(node)
        for a, b in itertools.pairwise(nodes):
            await wait_for(lambda a=a, b=b: b.peer_id in a.connected(), what="connection")
        yield nodes
