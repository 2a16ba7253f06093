"""Workarounds for py-libp2p 0.8.1: behaviour that would let a remote peer crash a vehicle, and
a shutdown that leaves a listener behind, and a signed peer record checked on every gossip
message.

Kept in this one module so they are easy to find and to drop when upstream fixes them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream, IPubsubRouter
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub as upstream_gossipsub
from libp2p.pubsub import pubsub as upstream_pubsub
from libp2p.pubsub import utils as upstream_utils
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


RECORD_RECHECK_S = 600.0  # a peer's unchanged record is checked again after this long
RECORD_MEMO_SIZE = 4096  # (host, peer, record) triples remembered


class PeerRecordMemo:
    """Check each peer's signed peer record once, not on every gossip RPC.

    Upstream attaches the sender's signed peer record to every pubsub RPC, and the receiver
    parses it, verifies its signature and rewrites the peer's addresses in its peerstore, twice
    per RPC (``Pubsub.continuously_read_stream`` and ``GossipSub.handle_rpc``): ~1.5-2.5 ms
    each on this machine. At 16 vehicles a round carries several hundred RPCs per vehicle
    (messages, IDONTWANT, IHAVE, heartbeats), so that was most of a vehicle's gossip CPU. The
    same bytes from the same peer are accepted again without the work for
    ``RECORD_RECHECK_S`` (then checked again, which renews the addresses' TTL); a new or
    changed record is checked as upstream does, and a failed check is never remembered.
    """

    def __init__(self, check: Callable[[rpc_pb2.RPC, IHost, ID], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check, self._clock = check, clock
        self._ok: OrderedDict[tuple[ID, ID, bytes], float] = OrderedDict()

    def __call__(self, msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        key = (host.get_id(), peer_id, msg.senderRecord)
        now = self._clock()
        checked = self._ok.get(key)
        if checked is not None and now - checked < RECORD_RECHECK_S:
            return True
        ok = self._check(msg, host, peer_id)
        if ok:
            self._ok[key] = now
            self._ok.move_to_end(key)
            while len(self._ok) > RECORD_MEMO_SIZE:
                self._ok.popitem(last=False)
        return ok


def memoise_peer_records() -> None:
    """Install ``PeerRecordMemo`` in upstream's pubsub modules (once per process)."""
    if not isinstance(upstream_pubsub.maybe_consume_signed_record, PeerRecordMemo):
        memo = PeerRecordMemo(upstream_utils.maybe_consume_signed_record)
        upstream_pubsub.maybe_consume_signed_record = memo  # type: ignore[assignment]
        upstream_gossipsub.maybe_consume_signed_record = memo  # type: ignore[assignment]
