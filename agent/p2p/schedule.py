"""Whom a fetch asks, and when: the pure part of ``Node.fetch``, without sockets or clocks.

A fetch asks the peers that may hold a payload, the announcer first. Asking a peer costs both
sides a stream (on a loaded vehicle most of a fetch's CPU), so the schedule asks as few as it
can and still finishes when a peer vanishes:

- a peer that answers BUSY holds the payload but is serving others: it is asked again after a
  pause that doubles (``busy_s`` .. ``busy_max_s``), and nobody new is asked because of it;
- a peer that fails otherwise (not found, a broken stream) is dropped, and the next peer is
  asked at once only if no other ask is in flight or waiting to be retried;
- otherwise a new peer is asked every ``hedge_s`` (the caller sets it from how long answers
  take lately, so that a slow fleet is not asked twice for everything), at most ``parallel``
  asks in flight at once.

The fetch has failed when no peer is left to ask, none is in flight and none will be retried.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

Peer = TypeVar("Peer", bound=Hashable)


class Answer(Enum):
    OK = "ok"
    BUSY = "busy"
    FAILED = "failed"  # not found, refused, a broken stream or a bad body


@dataclass
class FetchSchedule(Generic[Peer]):
    peers: Sequence[Peer]  # in the order to ask them: the announcer first
    hedge_s: float
    parallel: int = 2
    busy_s: float = 0.25
    busy_max_s: float = 2.0
    done: bool = False  # a peer answered OK
    _fresh: int = 0  # peers[:_fresh] have been asked
    _last_fresh: float = 0.0  # when the latest fresh peer was asked
    _in_flight: set[Peer] = field(default_factory=set)
    _retry: dict[Peer, float] = field(default_factory=dict)  # BUSY peers: ask again at
    _busy: dict[Peer, int] = field(default_factory=dict)  # BUSY answers per peer

    def due(self, now: float) -> list[Peer]:
        """The peers to ask now (each is in flight until ``answered``)."""
        if self.done:
            return []
        asks = []
        for peer, at in sorted(self._retry.items(), key=lambda kv: kv[1]):
            if at <= now and len(self._in_flight) < self.parallel:
                del self._retry[peer]
                asks.append(peer)
                self._in_flight.add(peer)
        if self._fresh < len(self.peers) and len(self._in_flight) < self.parallel and (
                self._fresh == 0 or now >= self._last_fresh + self.hedge_s
                or not (self._in_flight or self._retry)):
            peer = self.peers[self._fresh]
            self._fresh += 1
            self._last_fresh = now
            asks.append(peer)
            self._in_flight.add(peer)
        return asks

    def answered(self, peer: Peer, answer: Answer, now: float) -> None:
        self._in_flight.discard(peer)
        if answer is Answer.OK:
            self.done = True
        elif answer is Answer.BUSY:
            n = self._busy[peer] = self._busy.get(peer, 0) + 1
            self._retry[peer] = now + min(self.busy_max_s, self.busy_s * 2 ** (n - 1))

    @property
    def failed(self) -> bool:
        """No peer left to ask, none in flight and none to retry."""
        return (not self.done and self._fresh == len(self.peers) and not self._in_flight
                and not self._retry)

    def wake_at(self) -> float:
        """When ``due`` may next have a peer to ask, if no answer comes first."""
        if self.done or len(self._in_flight) >= self.parallel:
            return float("inf")  # only an answer makes room
        times = list(self._retry.values())
        if self._fresh < len(self.peers):
            times.append(self._last_fresh + self.hedge_s if self._fresh else float("-inf"))
        return min(times, default=float("inf"))
