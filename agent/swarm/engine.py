"""The round engine: one vehicle's view of the swarm round, as a pure state machine.

It does no I/O and reads no clock: the driver feeds it events (a round started, an announcement
arrived, a payload was fetched, the chain recorded a commitment, time passed) with the current
time, and it answers with actions for the driver to carry out (train, fetch, commit, verify,
sync). So every rule of the protocol (which announcements count, who commits and when, what a
commitment must contain) is tested here without sockets, and the daemon and the simulator run
exactly the same logic.

The round, from this vehicle's side (DESIGN.md, "A swarm round"):
  start(r, base)  -> Train             the driver trains and announces its own delta
  announced(a)    -> Fetch             contributions of this round, from registered vehicles
  tick(now)       -> Commit            only the round's committer, once it holds every live
                                       vehicle's delta (or min_peers at the deadline)
  committed(c)    -> Fetch/Verify      everyone merges exactly the committed set ...
  verified(ok)                         ... and moves on only if it gets the committed hash
  committed(c) for a round we are not in, or a mismatch -> Sync: fetch the model by its hash
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.p2p.announce import Announcement
from chain.ledger import RoundCommitment

MAX_CONTRIBUTIONS = 64  # what the contract accepts per round


@dataclass(frozen=True)
class EngineConfig:
    min_peers: int = 1
    # The committer stops waiting for vehicles that are connected but silent this long after
    # the round started, and commits what it has if that is at least min_peers.
    round_timeout_s: float = 120.0
    # If the committer itself stays silent, the next vehicle in the rotation commits this much
    # later than the deadline, and so on down the rotation.
    fallback_s: float = 20.0
    # Gossip is best effort: an announcement is published again this often while its round is
    # open, so a peer that joined the mesh late still hears it.
    reannounce_s: float = 5.0
    # A fetch that failed is tried again after this long.
    retry_s: float = 1.0


# --- actions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Train:
    round: int
    base_hash: bytes


@dataclass(frozen=True)
class Announce:
    announcement: Announcement


@dataclass(frozen=True)
class Fetch:
    payload_hash: bytes
    size: int
    sender: str


@dataclass(frozen=True)
class FetchAnnouncement:
    """A committed payload whose announcement we missed: it carries the sample count."""
    payload_hash: bytes


@dataclass(frozen=True)
class Commit:
    round: int
    base_hash: bytes
    contributions: tuple[Announcement, ...]  # ascending payload hash: the canonical order


@dataclass(frozen=True)
class Verify:
    commitment: RoundCommitment
    contributions: tuple[Announcement, ...]  # in the commitment's (ascending) order


@dataclass(frozen=True)
class Sync:
    """Adopt the model the chain names for ``round`` by fetching it by hash."""
    round: int
    model_hash: bytes


Action = Train | Announce | Fetch | FetchAnnouncement | Commit | Verify | Sync


@dataclass
class RoundState:
    round: int
    base_hash: bytes
    started_at: float
    own: Announcement | None = None
    announced_at: float = 0.0
    committing: bool = False
    commitment: RoundCommitment | None = None
    verifying: bool = False
    done: bool = False  # verified (or handed to a sync): nothing more to do in this round


@dataclass
class Engine:
    me: str  # this vehicle's address
    committee: tuple[str, ...]  # registered vehicles, the rotation order
    cfg: EngineConfig = EngineConfig()
    alive: frozenset[str] = frozenset()  # registered vehicles we are connected to
    state: RoundState | None = None
    stats: Counter[str] = field(default_factory=Counter)
    _anns: dict[bytes, Announcement] = field(default_factory=dict)  # by payload hash
    _by_sender: dict[tuple[int, str], bytes] = field(default_factory=dict)
    _have: set[bytes] = field(default_factory=set)  # payloads in the local store
    _inflight: set[bytes] = field(default_factory=set)
    _failed_at: dict[bytes, float] = field(default_factory=dict)
    _bad: set[bytes] = field(default_factory=set)  # payloads that failed to decode

    def __post_init__(self) -> None:
        self.set_committee(self.committee)

    def set_committee(self, committee: tuple[str, ...]) -> None:
        self.committee = tuple(sorted(committee, key=str.lower))

    @property
    def round(self) -> int | None:
        return self.state.round if self.state else None

    # --- rules ---------------------------------------------------------------------------------

    def check(self, ann: Announcement) -> str | None:
        """Why ``ann`` must be ignored, or None. Gossip validation runs this too, so a rejected
        announcement is neither delivered nor relayed."""
        if ann.sender not in self.committee:
            return "unregistered"
        if ann.payload_hash in self._bad:
            return "bad_payload"
        if self.state is not None:
            if ann.round < self.state.round:
                return "stale_round"
            if ann.round > self.state.round + 1:
                return "future_round"
            if ann.round == self.state.round and ann.base_hash != self.state.base_hash:
                return "wrong_base"
        first = self._by_sender.get((ann.round, ann.sender))
        if first is not None and first != ann.payload_hash:
            return "equivocation"
        return None

    def committer_rank(self, round_: int) -> int:
        """Our place in this round's commit order, counting only live vehicles: 0 commits
        first; rank k steps in k fallback periods after the deadline."""
        n = len(self.committee)
        order = [self.committee[(round_ + i) % n] for i in range(n)]
        live = [v for v in order if v in self.alive or v == self.me]
        return live.index(self.me) if self.me in live else n

    # --- events --------------------------------------------------------------------------------

    def start(self, round_: int, base_hash: bytes, now: float) -> list[Action]:
        """Round ``round_`` begins from the model ``base_hash``: train, and fetch what peers
        already announced for it."""
        self.state = RoundState(round_, base_hash, now)
        self._forget_before(round_)
        actions: list[Action] = [Train(round_, base_hash)]
        for ann in list(self._anns.values()):
            if ann.round == round_ and ann.base_hash != base_hash:
                self.stats["announce_rejected_wrong_base"] += 1
                self._drop(ann)
        return actions + self._fetches(now)

    def contributed(self, ann: Announcement, now: float) -> list[Action]:
        """Our own delta is trained and stored; announce it."""
        st = self._require()
        if ann.round != st.round:  # the round moved on while we trained
            self.stats["late_contribution"] += 1
            return []
        self._record(ann)
        self._have.add(ann.payload_hash)
        st.own, st.announced_at = ann, now
        return [Announce(ann)]

    def announced(self, ann: Announcement, now: float) -> list[Action]:
        reason = self.check(ann)
        if reason is not None:
            self.stats[f"announce_rejected_{reason}"] += 1
            return []
        if ann.payload_hash in self._anns:
            self.stats["announce_duplicate"] += 1
            return []
        self._record(ann)
        return self._fetches(now) + self._verify_if_ready()

    def fetched(self, payload_hash: bytes, ok: bool, now: float) -> list[Action]:
        self._inflight.discard(payload_hash)
        if ok:
            self._have.add(payload_hash)
            self._failed_at.pop(payload_hash, None)
            return self._verify_if_ready()
        self._failed_at[payload_hash] = now
        return []

    def payload_invalid(self, payload_hash: bytes) -> list[Action]:
        """A payload matched its hash but does not decode, or contradicts its announcement."""
        self._inflight.discard(payload_hash)
        self._bad.add(payload_hash)
        self.stats["payload_invalid"] += 1
        ann = self._anns.get(payload_hash)
        if ann is not None:
            self._drop(ann)
        st = self.state
        if st is not None and st.commitment is not None \
                and payload_hash in st.commitment.contributions:
            self.stats["invalid_commitment"] += 1  # we cannot check it: take the chain's model
            return [Sync(st.commitment.round, st.commitment.model_hash)]
        return []

    def announcement(self, payload_hash: bytes) -> Announcement | None:
        return self._anns.get(payload_hash)

    def announcement_fetched(self, ann: Announcement | None, payload_hash: bytes,
                             now: float) -> list[Action]:
        """The announcement of a committed payload, fetched because gossip missed it."""
        self._inflight.discard(b"ann" + payload_hash)
        st = self.state
        if ann is None or ann.payload_hash != payload_hash or st is None:
            self._failed_at[b"ann" + payload_hash] = now
            return []
        if ann.sender not in self.committee or ann.round != st.round \
                or ann.base_hash != st.base_hash:
            self.stats["invalid_commitment"] += 1
            c = st.commitment
            return [Sync(c.round, c.model_hash)] if c is not None else []
        if ann.payload_hash not in self._anns:
            self._anns[ann.payload_hash] = ann  # committed: it counts even if we saw another
        return self._fetches(now) + self._verify_if_ready()

    def committed(self, c: RoundCommitment, now: float) -> list[Action]:
        """The chain recorded round ``c.round``."""
        st = self.state
        if st is not None and c.round < st.round:
            return []
        if st is not None and c.round == st.round and st.commitment is not None:
            return []  # heard twice: the committer's own receipt, then the chain's event
        if st is None or c.round > st.round or c.base_hash != st.base_hash:
            self.stats["sync"] += 1
            return [Sync(c.round, c.model_hash)]
        st.commitment = c
        st.committing = False
        return self._fetches(now) + self._verify_if_ready()

    def commit_failed(self) -> None:
        """Our commit did not land (someone else's did, or the chain refused): stand by."""
        self._require().committing = False

    def verified(self, ok: bool) -> list[Action]:
        """The driver merged the committed set; ``ok`` if it got the committed model hash."""
        st = self._require()
        c = st.commitment
        assert c is not None and st.verifying
        st.verifying, st.done = False, True
        if ok:
            self.stats["rounds_verified"] += 1
            return []
        self.stats["verify_mismatch"] += 1
        return [Sync(c.round, c.model_hash)]

    def tick(self, now: float) -> list[Action]:
        """Time passed: retry fetches, re-announce, and commit when it is our turn."""
        st = self.state
        if st is None:
            return []
        actions: list[Action] = self._fetches(now)
        if st.own is not None and st.commitment is None \
                and now - st.announced_at >= self.cfg.reannounce_s:
            st.announced_at = now
            actions.append(Announce(st.own))
        if self._should_commit(st, now):
            st.committing = True
            actions.append(Commit(st.round, st.base_hash, self._contributions(st)))
        return actions

    # --- internals -----------------------------------------------------------------------------

    def _require(self) -> RoundState:
        if self.state is None:
            raise RuntimeError("no round in progress")
        return self.state

    def _record(self, ann: Announcement) -> None:
        self._anns[ann.payload_hash] = ann
        self._by_sender.setdefault((ann.round, ann.sender), ann.payload_hash)

    def _drop(self, ann: Announcement) -> None:
        del self._anns[ann.payload_hash]
        if self._by_sender.get((ann.round, ann.sender)) == ann.payload_hash:
            del self._by_sender[(ann.round, ann.sender)]

    def _forget_before(self, round_: int) -> None:
        for ann in [a for a in self._anns.values() if a.round < round_]:
            self._drop(ann)
        self._by_sender = {k: v for k, v in self._by_sender.items() if k[0] >= round_}
        live = set(self._anns)
        self._have &= live
        self._inflight &= live | {b"ann" + h for h in live}
        self._failed_at.clear()
        self._bad.clear()  # what they named was of an older round, and is rejected as stale

    def _contributions(self, st: RoundState) -> tuple[Announcement, ...]:
        mine = [a for a in self._anns.values()
                if a.round == st.round and a.payload_hash in self._have
                and self._by_sender.get((a.round, a.sender)) == a.payload_hash]
        mine.sort(key=lambda a: a.payload_hash)
        return tuple(mine[:MAX_CONTRIBUTIONS])

    def _wanted(self, st: RoundState) -> list[bytes]:
        if st.commitment is not None:
            return list(st.commitment.contributions)
        return [h for h, a in self._anns.items() if a.round == st.round]

    def _fetches(self, now: float) -> list[Action]:
        st = self.state
        if st is None:
            return []
        actions: list[Action] = []
        for h in self._wanted(st):
            ann = self._anns.get(h)
            key = h if ann is not None else b"ann" + h
            if (ann is not None and h in self._have) or key in self._inflight:
                continue
            if now - self._failed_at.get(key, -1e18) < self.cfg.retry_s:
                continue
            self._inflight.add(key)
            actions.append(Fetch(h, ann.size, ann.sender) if ann is not None
                           else FetchAnnouncement(h))
        return actions

    def _should_commit(self, st: RoundState, now: float) -> bool:
        if st.committing or st.commitment is not None or st.own is None:
            return False
        got = self._contributions(st)
        if len(got) < self.cfg.min_peers:
            return False
        senders = {a.sender for a in got}
        everyone = all(v in senders for v in self.committee if v in self.alive or v == self.me)
        deadline = st.started_at + self.cfg.round_timeout_s
        rank = self.committer_rank(st.round)
        if rank == 0:
            return everyone or now >= deadline
        return now >= deadline + rank * self.cfg.fallback_s

    def _verify_if_ready(self) -> list[Action]:
        st = self.state
        if st is None or st.commitment is None or st.verifying or st.done:
            return []
        c = st.commitment
        anns = [self._anns.get(h) for h in c.contributions]
        if any(a is None or a.payload_hash not in self._have for a in anns):
            return []
        got = tuple(a for a in anns if a is not None)
        if len({a.sender for a in got}) != len(got):
            self.stats["invalid_commitment"] += 1  # one vehicle counted twice
            return [Sync(c.round, c.model_hash)]
        st.verifying = True
        return [Verify(c, got)]
