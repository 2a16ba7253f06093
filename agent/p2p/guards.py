"""Workarounds for py-libp2p 0.8.1 behaviour that would let a remote peer crash a vehicle.

Kept in this one module so they are easy to find and to drop when upstream fixes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter

from libp2p.abc import INetStream
from libp2p.pubsub.pubsub import Pubsub

log = logging.getLogger(__name__)


class GuardedPubsub(Pubsub):
    """Pubsub whose read loop survives a malformed frame.

    Upstream ``Pubsub.continuously_read_stream`` parses every frame with protobuf but only
    catches stream errors: one undecodable frame (``DecodeError``), or any other surprise in
    handling it, escapes the read loop and ends the pubsub service, and with it the whole
    ``trio.run``. Here such a frame costs its sender the stream, and the vehicle carries on.
    """

    stats: Counter[str]

    async def continuously_read_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().continuously_read_stream(stream)
        except Exception as e:
            self.stats["pubsub_bad_frame"] += 1
            log.warning("pubsub_bad_frame peer=%s error=%s: %s", peer_id, type(e).__name__,
                        str(e)[:200])
            with contextlib.suppress(Exception):  # already gone: nothing to release
                await stream.reset()
            self._handle_dead_peer(peer_id)
