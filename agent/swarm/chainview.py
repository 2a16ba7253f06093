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

from chain.ledger import ChainEvent, Ledger

log = logging.getLogger(__name__)
T = TypeVar("T")
FOLLOW_BACKOFF_MAX_S = 10.0


class AsyncLedger:
    def __init__(self, ledger: Ledger, lane: trio.CapacityLimiter | None = None) -> None:
        self.ledger = ledger
        self.lane = lane or trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the chain's lane. Cancellable: on cancel the caller returns at once
        and the thread finishes on its own (it keeps the lane until then), so a hung endpoint
        never holds up a vehicle's shutdown."""
        return await trio.to_thread.run_sync(  # type: ignore[call-arg]
            fn, *args, limiter=self.lane, abandon_on_cancel=True)

    async def follow(self, from_block: int, poll_s: float
                     ) -> AsyncIterator[tuple[ChainEvent | None, float]]:
        """The contract's events from ``from_block`` on, as they land (polling), each with the
        chain's time; (None, time) after each poll, so the caller's clock follows the chain.
        Every failure is logged and retried with backoff: the chain going away never ends a
        vehicle."""
        next_block, delay = from_block, poll_s
        while True:
            try:
                head, chain_time = await self.run(self.ledger.head_time)
                if head >= next_block:
                    for e in await self.run(self.ledger.events, next_block, head):
                        yield e, float(chain_time)
                    next_block = head + 1
                yield None, float(chain_time)
                delay = poll_s
            except Exception as e:  # any web3 or node failure: ask again later
                log.warning("chain_poll_failed error=%s: %s", type(e).__name__, e)
                delay = min(FOLLOW_BACKOFF_MAX_S, delay * 2)
            await trio.sleep(delay)
