"""Workarounds for py-libp2p 0.8.1: behaviour that would let a remote peer crash a vehicle, and
a shutdown that leaves a listener behind.

Kept in this one module so they are easy to find and to drop when upstream fixes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable

import trio
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
    counted; the vehicle carries on. A peer the gate refuses gets no pubsub stream at all.
    """

    def __init__(self, host: IHost, router: IPubsubRouter, stats: Counter[str],
                 admits: Callable[[ID], str | None] = lambda peer: None) -> None:
        super().__init__(host, router)
        self.stats, self.admits = stats, admits

    async def continuously_read_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        if self.admits(peer_id) is not None:
            self.stats["pubsub_stream_refused"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
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


SWARM_CLOSE_S = 5.0  # bound on closing connections and listeners at shutdown


async def close_swarm(host: IHost) -> None:
    """Close the host's connections and listeners, even while the caller is being cancelled.

    Upstream, the swarm closes its listeners in clean-up code that runs inside the cancelled
    scope: its first ``await`` raises ``Cancelled`` and the rest is skipped, so a node stopped by
    cancellation keeps a zombie listener on its port. The listener sockets use SO_REUSEPORT, so
    a node restarted on the same port binds beside it, and the kernel hands part of the
    incoming connections to the zombie, which accepts and never answers. Shielded and bounded
    here; ``Swarm.close`` is idempotent, so upstream's own clean-up becomes a no-op.
    """
    with trio.move_on_after(SWARM_CLOSE_S) as scope:
        scope.shield = True
        try:
            await host.get_network().close()  # type: ignore[attr-defined]
        except Exception as e:  # a connection that fails to close must not stop the rest
            log.warning("swarm_close_failed error=%s", e)
