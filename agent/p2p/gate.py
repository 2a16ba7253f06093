"""Who may talk to this vehicle, and how much: the fleet's admission and penalty rules.

py-libp2p 0.8.1 gates connections by IP address only, and its resource manager limits streams
globally (allowlisted peers even bypass it), so the rules a fleet needs live here:
- only registered vehicles and the operator's observers may hold a connection; anyone else is
  disconnected as soon as the connection is up (``Gate.admits``), and every handler checks
  again before it reads a byte;
- a peer holds at most ``max_streams_per_peer`` inbound streams at once;
- a peer that forwards invalid gossip, or too much gossip, is disconnected and banned for
  ``ban_s`` (its reconnections are refused like a stranger's).
The rules are pure and clocked by the caller; ``GateNotifee`` applies them to the network.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.rcmgr import Direction
from multiaddr import Multiaddr

from agent.p2p.identity import address_of_peer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    max_streams_per_peer: int = 16
    window_s: float = 10.0  # the window the two gossip limits below count over
    max_invalid: int = 20  # invalid gossip messages a peer may forward per window
    max_messages: int = 500  # gossip messages of any kind a peer may forward per window
    ban_s: float = 60.0


@dataclass
class Gate:
    """The admission list (live, from the chain), per-peer stream counts and the penalty box."""
    cfg: GateConfig = GateConfig()
    allowed: frozenset[str] = frozenset()  # registered vehicles and observers (addresses)
    stats: Counter[str] = field(default_factory=Counter)
    _banned: dict[ID, float] = field(default_factory=dict)  # peer -> ban ends
    _streams: dict[ID, set[int]] = field(default_factory=dict)  # inbound streams by id()
    _messages: dict[ID, deque[float]] = field(default_factory=dict)
    _invalid: dict[ID, deque[float]] = field(default_factory=dict)

    def admits(self, peer: ID, now: float) -> str | None:
        """Why ``peer`` may not talk to us, or None."""
        until = self._banned.get(peer)
        if until is not None:
            if now < until:
                return "banned"
            del self._banned[peer]
        if address_of_peer(peer) not in self.allowed:
            return "not_registered"
        return None

    def stream_opened(self, peer: ID, stream: int) -> bool:
        """Count an inbound stream; False if the peer is over its share."""
        open_ = self._streams.setdefault(peer, set())
        if len(open_) >= self.cfg.max_streams_per_peer:
            self.stats["stream_refused_over_limit"] += 1
            return False
        open_.add(stream)
        return True

    def stream_closed(self, peer: ID, stream: int) -> None:
        open_ = self._streams.get(peer)
        if open_ is not None:
            open_.discard(stream)
            if not open_:
                del self._streams[peer]

    def gossip(self, peer: ID, valid: bool, now: float) -> str | None:
        """Record a gossip message ``peer`` forwarded; a reason to ban it, or None."""
        if self._over(self._messages, peer, now, self.cfg.max_messages):
            return self._ban(peer, now, "gossip_flood")
        if not valid and self._over(self._invalid, peer, now, self.cfg.max_invalid):
            return self._ban(peer, now, "invalid_gossip")
        return None

    def banned(self, peer: ID, now: float) -> bool:
        return self._banned.get(peer, 0.0) > now

    def _over(self, log_: dict[ID, deque[float]], peer: ID, now: float, limit: int) -> bool:
        times = log_.setdefault(peer, deque())
        times.append(now)
        while times and times[0] <= now - self.cfg.window_s:
            times.popleft()
        return len(times) > limit

    def _ban(self, peer: ID, now: float, reason: str) -> str:
        self._banned[peer] = now + self.cfg.ban_s
        self._messages.pop(peer, None)
        self._invalid.pop(peer, None)
        self.stats[f"peer_banned_{reason}"] += 1
        log.warning("peer_banned peer=%s reason=%s for=%.0fs", peer, reason, self.cfg.ban_s)
        return reason


class GateNotifee(INotifee):
    """Applies the gate to the network's events: refused connections are closed at once,
    streams over a peer's share are reset."""

    def __init__(self, gate: Gate, clock: Callable[[], float]) -> None:
        self.gate, self.clock = gate, clock

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        reason = self.gate.admits(peer, self.clock())
        if reason is not None:
            self.gate.stats[f"connection_refused_{reason}"] += 1
            log.info("connection_refused peer=%s reason=%s", peer, reason)
            await _quietly(conn.close())

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        # Only streams the peer opened count against it; the swarm tags each with a direction.
        if getattr(stream, "_direction", None) != Direction.INBOUND:
            return
        if not self.gate.stream_opened(stream.muxed_conn.peer_id, id(stream)):
            await _quietly(stream.reset())

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        self.gate.stream_closed(stream.muxed_conn.peer_id, id(stream))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None


async def _quietly(aw: object) -> None:
    try:
        await aw  # type: ignore[misc]
    except Exception as e:  # already closed or reset by the other side
        log.debug("close_failed error=%s", e)
