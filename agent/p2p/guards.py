"""Workarounds for py-libp2p 0.8.1 behaviour that would let a remote peer crash a vehicle.

Kept in this one module so they are easy to find and to drop when upstream fixes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter

from libp2p.abc import IHost, INetStream, IPubsubRouter
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

log = logging.getLogger(__name__)


class GuardedPubsub(Pubsub):
    """Pubsub that survives malformed frames and messages.

    Upstream, two paths let one remote peer end the pubsub service, and with it the whole
    ``trio.run``:
    - ``continuously_read_stream`` parses every frame with protobuf but only catches stream
      errors, so an undecodable frame (``DecodeError``) escapes the read loop;
    - ``push_msg`` runs as a service task, and a published message whose ``key`` field is not a
      protobuf public key raises ``DecodeError`` in the signature check.
    Here a bad frame costs its sender the stream, a bad message is dropped, and both are
    counted; the vehicle carries on.
    """

    def __init__(self, host: IHost, router: IPubsubRouter, stats: Counter[str]) -> None:
        super().__init__(host, router)
        self.stats = stats

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

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as e:
            self.stats["pubsub_bad_message"] += 1
            log.warning("pubsub_bad_message forwarder=%s error=%s: %s", msg_forwarder,
                        type(e).__name__, str(e)[:200])
