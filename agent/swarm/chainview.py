"""The chain as the trio loop sees it: every call on a worker thread, never blocking the loop.

web3 is synchronous; an HTTP round trip or an in-process EVM execution would stall gossip and
fetches if run on the loop. Calls share a ``CapacityLimiter``: one lane per chain connection
(eth-tester in particular is not thread-safe).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import trio

from chain.errors import LedgerError
from chain.ledger import Ledger, RoundCommitment

log = logging.getLogger(__name__)
T = TypeVar("T")


class AsyncLedger:
    def __init__(self, ledger: Ledger, lane: trio.CapacityLimiter | None = None) -> None:
        self.ledger = ledger
        self.lane = lane or trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.lane)

    async def follow(self, from_block: int, poll_s: float) -> AsyncIterator[RoundCommitment]:
        """RoundCommitted events from ``from_block`` on, as they land (polling)."""
        next_block = from_block
        while True:
            try:
                head = await self.run(self.ledger.head)
                if head >= next_block:
                    for c in await self.run(self.ledger.commitments, next_block, head):
                        yield c
                    next_block = head + 1
            except LedgerError as e:  # the node is away: keep the vehicle up, ask again
                log.warning("chain_poll_failed error=%s", e)
            await trio.sleep(poll_s)
