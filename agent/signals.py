"""Stopping cleanly on SIGINT and SIGTERM inside ``trio.run``.

trio turns Ctrl-C into ``KeyboardInterrupt`` raised wherever the main thread happens to be;
inside a library task that catches ``BaseException`` (py-libp2p's service managers do) it is
swallowed and the program runs on. Here the signal is received as an event instead and
cancels the scope that owns the work, so every task takes its normal shutdown path.
"""

from __future__ import annotations

import signal

import trio

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """Which stop signal arrived, if any."""

    def __init__(self) -> None:
        self.signal: int | None = None


async def cancel_on_signal(scope: trio.CancelScope, stop: Stop) -> None:
    """Wait for SIGINT or SIGTERM; record it in ``stop`` and cancel ``scope``."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            stop.signal = signum
            scope.cancel()
            return
