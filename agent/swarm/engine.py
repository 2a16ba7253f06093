"""The round engine: one vehicle's view of the swarm round, as a pure state machine.

It does no I/O and reads no clock: the driver feeds it events (a round opened, an announcement
or attestation arrived, a payload was fetched, the chain recorded a commit or a finalisation,
membership or parameters changed, time passed) with the chain's current time, and it answers
with actions for the driver to carry out. So every rule of the protocol (docs/spec/round-v2.md:
which announcements count, whose slot it is, what a commitment must bind, when to attest,
when to finalise, when a commit has expired) is tested here without sockets, and the daemon
and the simulator run exactly the same logic.

The round, from this vehicle's side:
  start(r, base, opened_at) -> Train      train and announce our own delta
  announced(a)             -> Fetch       contributions of this round, from registered vehicles
  tick(now)                -> Commit      only in our slot (mirroring the contract's rule)
  committed(c)             -> Fetch/Verify  recompute exactly the committed entries ...
  verified(hash)           -> Attest      ... and sign the model hash only if it matches
  attested(x)              -> Finalize    once a quorum signed the pending model (committer
                                          first, the others later in turn)
  finalized(f)             -> Adopt/Sync  the chain says final: keep what we verified, or
                                          fetch the final model by hash (a quorum verified it)
  tick(now) past the finalize window: the commit expired; the round can be committed again.
A vehicle never moves on from an unfinalised commit, whatever it computed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.p2p.announce import Announcement
from agent.p2p.attest import Attestation
from chain.ledger import ChainParams, RoundCommitment, RoundFinal

MAX_CONTRIBUTIONS = 64  # what the contract accepts per round


@dataclass(frozen=True)
class EngineConfig:
    # Gossip is best effort: an announcement (and our attestation) is published again while its
    # round is open, so a peer that joined the mesh late still hears it: first after
    # reannounce_s, then at doubling gaps up to reannounce_max_s. Each publish reaches every
    # vehicle, so a fixed gap would cost vehicles^2 messages per gap, for the whole round.
    reannounce_s: float = 5.0
    reannounce_max_s: float = 60.0
    # A fetch that failed is tried again after retry_s, then at doubling gaps up to
    # retry_max_s: when peers are too busy to answer, retrying at a fixed pace adds the load
    # that keeps them busy (every retry asks every peer that may hold the payload).
    retry_s: float = 1.0
    retry_max_s: float = 8.0
    # No commit is sent this close to the end of our slot: our estimate of the chain's clock
    # may be off by this much, and a commit that lands in the next slot reverts.
    margin_s: float = 1.0


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
    """A committed payload whose announcement we missed: it carries the signed sample count."""
    payload_hash: bytes


@dataclass(frozen=True)
class Commit:
    round: int
    base_hash: bytes
    contributions: tuple[Announcement, ...]  # senders ascending: the canonical order


@dataclass(frozen=True)
class Verify:
    commitment: RoundCommitment
    contributions: tuple[Announcement, ...]  # in the commitment's order


@dataclass(frozen=True)
class Attest:
    """Sign and gossip: we recomputed ``model_hash`` for ``round`` bit for bit."""
    round: int
    model_hash: bytes


@dataclass(frozen=True)
class Finalize:
    round: int
    model_hash: bytes
    signatures: dict[str, bytes]  # signer address -> 65-byte signature


@dataclass(frozen=True)
class Adopt:
    """The round is final with the model we verified: keep it and start the next round."""
    final: RoundFinal


@dataclass(frozen=True)
class Sync:
    """Adopt the final model of ``round`` by fetching it by hash (a quorum verified it)."""
    round: int
    model_hash: bytes
    opened_at: float  # when the next round opened


Action = (Train | Announce | Fetch | FetchAnnouncement | Commit | Verify | Attest | Finalize
          | Adopt | Sync)


@dataclass
class Repeat:
    """A message sent again at doubling gaps: ``due`` is the next time, ``gap`` the last gap."""
    due: float
    gap: float

    def fire(self, now: float, cap: float) -> bool:
        """True (and the next time set) when it is time to send again."""
        if now < self.due:
            return False
        self.gap = min(2 * self.gap, cap)
        self.due = now + self.gap
        return True


@dataclass
class RoundState:
    round: int
    base_hash: bytes
    opened_at: float  # chain time the round opened (the previous finalisation)
    attempts: int = 0  # commits of this round seen so far
    expired_at: float | None = None  # when the latest commit of this round expired
    own: Announcement | None = None
    reannounce: Repeat | None = None  # when our announcement goes out again
    committing: bool = False
    commitment: RoundCommitment | None = None  # the live commit awaiting quorum
    verifying: bool = False
    verified: bytes | None = None  # the committed hash we recomputed, if it matched
    rejected: bool = False  # the live commit failed our checks: we attest nothing
    reattest: Repeat | None = None  # when our attestation goes out again
    quorum_at: float | None = None  # when we first held a quorum for the live commit
    finalizing: bool = False
    retry_at: float = 0.0  # after a commit or finalisation that did not land: not before
    final: RoundFinal | None = None  # final on chain while our own check was still running
    done: bool = False  # final: nothing more to do in this round


@dataclass
class Engine:
    me: str  # this vehicle's address
    committee: tuple[str, ...]  # registered vehicles in the contract's order (vehicle_at)
    params: ChainParams
    cfg: EngineConfig = EngineConfig()
    alive: frozenset[str] = frozenset()  # registered vehicles we are connected to
    state: RoundState | None = None
    stats: Counter[str] = field(default_factory=Counter)
    _anns: dict[tuple[int, str], Announcement] = field(default_factory=dict)  # (round, sender)
    _have: set[bytes] = field(default_factory=set)  # payloads in the local store, checked
    _inflight: set[bytes] = field(default_factory=set)
    _failed: dict[bytes, tuple[float, int]] = field(default_factory=dict)  # (last, how often)
    _bad: set[tuple[str, bytes]] = field(default_factory=set)  # (sender, payload) that failed
    _sigs: dict[bytes, dict[str, bytes]] = field(default_factory=dict)  # model -> signer -> sig

    @property
    def round(self) -> int | None:
        return self.state.round if self.state else None

    # --- chain state ---------------------------------------------------------------------------

    def set_committee(self, committee: tuple[str, ...]) -> None:
        """Membership changed on chain: the rotation and who may announce follow at once."""
        self.committee = tuple(committee)
        members = set(committee)
        for key in [k for k, a in self._anns.items() if a.sender not in members]:
            del self._anns[key]
        for sigs in self._sigs.values():
            for signer in [s for s in sigs if s not in members]:
                del sigs[signer]

    def set_params(self, params: ChainParams) -> None:
        self.params = params

    # --- rules ---------------------------------------------------------------------------------

    def check(self, ann: Announcement) -> str | None:
        """Why ``ann`` must be ignored, or None. Gossip validation runs this too, so a rejected
        announcement is neither delivered nor relayed."""
        if ann.sender not in self.committee:
            return "unregistered"
        if (ann.sender, ann.payload_hash) in self._bad:
            return "bad_payload"
        st = self.state
        if st is None:
            return "not_ready"  # nothing is kept before the first round opens: no unbounded table
        if ann.round < st.round:
            return "stale_round"
        if ann.round > st.round + 1:
            return "future_round"
        if ann.round == st.round and ann.base_hash != st.base_hash:
            return "wrong_base"
        first = self._anns.get((ann.round, ann.sender))
        if first is not None and first.payload_hash != ann.payload_hash:
            return "equivocation"
        if any(a.payload_hash == ann.payload_hash and a.sender != ann.sender
               for a in self._anns.values() if a.round == ann.round):
            return "copied_payload"  # the first announcer's stands until its payload disowns it
        return None

    def check_attestation(self, att: Attestation) -> str | None:
        if att.signer not in self.committee:
            return "unregistered"
        st = self.state
        if st is None or att.round != st.round:
            return "other_round"
        return None

    def slot(self, now: float) -> tuple[str | None, float]:
        """Who may commit the open round at chain time ``now``, and when that slot ends: the
        contract's ``slot_holder`` (round-v2.md, "Committer slots")."""
        st, p, n = self.state, self.params, len(self.committee)
        if st is None or n == 0:
            return None, now
        origin, offset = st.opened_at, 0
        if st.expired_at is not None:
            origin, offset = st.expired_at, st.attempts
        start = origin + p.round_timeout
        k = 0 if now < start else int((now - start) // p.fallback_slot)
        end = start + (k + 1) * p.fallback_slot
        return self.committee[(st.round + offset + k) % n], end

    # --- events --------------------------------------------------------------------------------

    def start(self, round_: int, base_hash: bytes, opened_at: float, now: float,
              attempts: int = 0, expired_at: float | None = None) -> list[Action]:
        """Round ``round_`` opened at ``opened_at`` from the final model ``base_hash``: train,
        and fetch what peers already announced for it. ``attempts`` and ``expired_at`` carry a
        round joined after some of its commits expired."""
        self.state = RoundState(round_, base_hash, opened_at, attempts, expired_at)
        self._forget_before(round_)
        for ann in [a for a in self._anns.values() if a.round == round_]:
            if ann.base_hash != base_hash:
                self.stats["announce_rejected_wrong_base"] += 1
                del self._anns[(ann.round, ann.sender)]
        return [Train(round_, base_hash), *self._fetches(now)]

    def contributed(self, ann: Announcement, now: float) -> list[Action]:
        """Our own delta is trained and stored; announce it."""
        st = self.state
        if st is None or ann.round != st.round:  # the round moved on while we trained
            self.stats["late_contribution"] += 1
            return []
        self._anns[(ann.round, ann.sender)] = ann
        self._have.add(ann.payload_hash)
        st.own, st.reannounce = ann, self._repeat(now)
        return [Announce(ann), *self._verify_if_ready()]

    def announced(self, ann: Announcement, now: float) -> list[Action]:
        reason = self.check(ann)
        if reason is not None:
            self.stats[f"announce_rejected_{reason}"] += 1
            return []
        if (ann.round, ann.sender) in self._anns:
            self.stats["announce_duplicate"] += 1
            return []
        self._anns[(ann.round, ann.sender)] = ann
        return self._fetches(now) + self._verify_if_ready()

    def announcement_for(self, payload_hash: bytes, sender: str | None = None
                         ) -> Announcement | None:
        for a in self._anns.values():
            if a.payload_hash == payload_hash and (sender is None or a.sender == sender):
                return a
        return None

    def fetched(self, payload_hash: bytes, ok: bool, now: float) -> list[Action]:
        self._inflight.discard(payload_hash)
        if ok:
            self._have.add(payload_hash)
            self._failed.pop(payload_hash, None)
            return self._verify_if_ready()
        self._failure(payload_hash, now)
        return []

    def _failure(self, key: bytes, now: float) -> None:
        self._failed[key] = (now, self._failed.get(key, (now, 0))[1] + 1)

    def _retry_at(self, key: bytes) -> float:
        last, failures = self._failed[key]
        return last + min(self.cfg.retry_max_s, self.cfg.retry_s * 2 ** (failures - 1))

    def payload_invalid(self, payload_hash: bytes, sender: str) -> list[Action]:
        """A payload matched its hash but does not decode, or is not what ``sender``'s
        announcement says (round, base, author)."""
        self._inflight.discard(payload_hash)
        self._bad.add((sender, payload_hash))
        self.stats["payload_invalid"] += 1
        for key in [k for k, a in self._anns.items()
                    if a.sender == sender and a.payload_hash == payload_hash]:
            del self._anns[key]
        return self._verify_if_ready()

    def announcement_fetched(self, ann: Announcement | None, payload_hash: bytes,
                             now: float) -> list[Action]:
        """The announcement of a committed payload, fetched because gossip missed it."""
        self._inflight.discard(b"ann" + payload_hash)
        st = self.state
        if ann is None or ann.payload_hash != payload_hash or st is None \
                or self.check(ann) not in (None, "equivocation", "copied_payload"):
            self._failure(b"ann" + payload_hash, now)
            return []
        # Committed: it counts even if gossip brought us another first; the checks in
        # _verify_if_ready compare it with the commitment's entry.
        self._anns[(ann.round, ann.sender)] = ann
        return self._fetches(now) + self._verify_if_ready()

    def committed(self, c: RoundCommitment, now: float) -> list[Action]:
        """The chain recorded a commit of the open round (awaiting quorum)."""
        st = self.state
        if st is None or c.round != st.round or st.done:
            return []
        if st.commitment is not None and st.commitment.committed_at == c.committed_at \
                and st.commitment.model_hash == c.model_hash:
            return []  # heard twice: the committer's own receipt, then the chain's event
        st.attempts += 1
        st.commitment, st.committing = c, False
        st.verified, st.rejected, st.verifying = None, False, False
        st.quorum_at, st.finalizing = None, False
        if c.base_hash != st.base_hash:
            return self._reject_commitment("wrong_base")
        return self._fetches(now) + self._verify_if_ready() + self._finalize_if_ready(now)

    def commit_failed(self, now: float) -> None:
        """Our commit did not land (not our slot after all, or a commit was live): stand by,
        and try again no sooner than ``retry_s`` (the chain's clock may differ from ours)."""
        if self.state is not None:
            self.state.committing = False
            self.state.retry_at = now + self.cfg.retry_s

    def verified(self, model_hash: bytes | None, now: float) -> list[Action]:
        """The driver merged the committed entries and got ``model_hash`` (None: it could
        not merge them)."""
        st = self.state
        if st is None or st.commitment is None or not st.verifying:
            return []
        st.verifying = False
        final = st.final
        if model_hash != st.commitment.model_hash:
            self.stats["verify_mismatch"] += 1
            st.rejected = True
            if final is not None:  # a quorum disagreed with us: take its model, and say so
                self.stats["final_overrode_our_check"] += 1
                self.stats["sync"] += 1
                return [Sync(final.round, final.model_hash, final.finalized_at)]
            return []
        self.stats["rounds_verified"] += 1
        st.verified, st.reattest = model_hash, self._repeat(now)
        if final is not None:
            return [Adopt(final)]
        return [Attest(st.round, model_hash)]

    def attested(self, att: Attestation, now: float) -> list[Action]:
        """A registered vehicle signed a model hash for the open round (ours included)."""
        reason = self.check_attestation(att)
        if reason is not None:
            self.stats[f"attestation_rejected_{reason}"] += 1
            return []
        sigs = self._sigs.setdefault(att.model_hash, {})
        if att.signer in sigs:
            return []
        for other in self._sigs.values():  # one model per signer: the table stays bounded
            other.pop(att.signer, None)
        self._sigs = {m: s for m, s in self._sigs.items() if s or m == att.model_hash}
        sigs[att.signer] = att.signature
        return self._finalize_if_ready(now)

    def finalize_failed(self, now: float) -> None:
        if self.state is not None:
            self.state.finalizing = False
            self.state.retry_at = now + self.cfg.retry_s

    def finalized(self, f: RoundFinal, now: float) -> list[Action]:
        """The chain made round ``f.round`` final: move on, keeping only verified models."""
        st = self.state
        if st is not None and (f.round < st.round or (f.round == st.round and st.done)):
            return []
        if st is not None and f.round == st.round:
            st.done = True
            if st.verified == f.model_hash:
                return [Adopt(f)]
            if st.verifying and st.commitment is not None \
                    and st.commitment.model_hash == f.model_hash:
                st.final = f  # our own merge is nearly done: finish it rather than fetch
                return []
            if st.rejected:
                self.stats["final_overrode_our_check"] += 1  # an alarm: a quorum disagreed
        self.stats["sync"] += 1
        return [Sync(f.round, f.model_hash, f.finalized_at)]

    def tick(self, now: float) -> list[Action]:
        """Time passed: retry fetches, re-announce, expire a stale commit, commit in our slot,
        finalise in our turn."""
        st = self.state
        if st is None or st.done:
            return []
        actions: list[Action] = self._fetches(now)
        c = st.commitment
        if c is not None and now >= c.committed_at + self.params.finalize_window:
            self.stats["commit_expired"] += 1
            st.expired_at = c.committed_at + self.params.finalize_window
            st.commitment, st.verified, st.rejected, st.verifying = None, None, False, False
            st.quorum_at, st.finalizing = None, False
        cap = self.cfg.reannounce_max_s
        if st.own is not None and st.reannounce is not None and st.reannounce.fire(now, cap) \
                and st.commitment is None:
            actions.append(Announce(st.own))
        if st.verified is not None and st.reattest is not None and st.reattest.fire(now, cap):
            actions.append(Attest(st.round, st.verified))
        if self._should_commit(st, now):
            st.committing = True
            actions.append(Commit(st.round, st.base_hash, self._contributions(st)))
        return actions + self._finalize_if_ready(now)

    # --- internals -----------------------------------------------------------------------------

    def _repeat(self, now: float) -> Repeat:
        return Repeat(due=now + self.cfg.reannounce_s, gap=self.cfg.reannounce_s)

    def _forget_before(self, round_: int) -> None:
        self._anns = {k: a for k, a in self._anns.items() if a.round >= round_}
        live = {a.payload_hash for a in self._anns.values()}
        self._have &= live
        self._inflight &= live | {b"ann" + h for h in live}
        self._failed.clear()
        self._bad.clear()  # what they named was of an older round, and is rejected as stale
        self._sigs.clear()

    def _contributions(self, st: RoundState) -> tuple[Announcement, ...]:
        mine = [a for a in self._anns.values()
                if a.round == st.round and a.payload_hash in self._have]
        mine.sort(key=lambda a: int(a.sender, 16))
        return tuple(mine[:MAX_CONTRIBUTIONS])

    def _wanted(self, st: RoundState) -> list[tuple[bytes, Announcement | None]]:
        if st.commitment is not None:
            return [(e.payload_hash, self.announcement_for(e.payload_hash, e.sender))
                    for e in st.commitment.contributions]
        return [(a.payload_hash, a) for a in self._anns.values() if a.round == st.round]

    def _fetches(self, now: float) -> list[Action]:
        st = self.state
        if st is None:
            return []
        actions: list[Action] = []
        for h, ann in self._wanted(st):
            key = h if ann is not None else b"ann" + h
            if (ann is not None and h in self._have) or key in self._inflight:
                continue
            if key in self._failed and now < self._retry_at(key):
                continue
            self._inflight.add(key)
            actions.append(Fetch(h, ann.size, ann.sender) if ann is not None
                           else FetchAnnouncement(h))
        return actions

    def _should_commit(self, st: RoundState, now: float) -> bool:
        if st.committing or st.commitment is not None or st.own is None or now < st.retry_at:
            return False
        holder, end = self.slot(now)
        if holder != self.me or now > end - self.cfg.margin_s:
            return False
        got = self._contributions(st)
        if len(got) < self.params.min_peers:
            return False
        origin = st.opened_at if st.expired_at is None else st.expired_at
        if now >= origin + self.params.round_timeout:
            return True  # a fallback slot, or the first slot's deadline: commit what we hold
        senders = {a.sender for a in got}
        return all(v in senders for v in self.committee if v in self.alive or v == self.me)

    def _reject_commitment(self, reason: str) -> list[Action]:
        st = self.state
        assert st is not None
        self.stats["invalid_commitment"] += 1
        self.stats[f"invalid_commitment_{reason}"] += 1
        st.rejected = True
        return []

    def _verify_if_ready(self) -> list[Action]:
        st = self.state
        if st is None or st.commitment is None or st.verifying or st.rejected \
                or st.verified is not None:
            return []
        c = st.commitment
        anns = []
        for e in c.contributions:
            if (e.sender, e.payload_hash) in self._bad:
                return self._reject_commitment("bad_payload")
            a = self._anns.get((st.round, e.sender))
            if a is None or a.payload_hash not in self._have:
                return []  # still fetching
            if a.payload_hash != e.payload_hash:
                return []  # the sender equivocated: _wanted fetches the committed announcement
            if a.samples != e.samples:
                return self._reject_commitment("samples")
            anns.append(a)
        if len({a.payload_hash for a in anns}) != len(anns):
            return self._reject_commitment("duplicate_payload")
        st.verifying = True
        return [Verify(c, tuple(anns))]

    def _finalize_if_ready(self, now: float) -> list[Action]:
        st = self.state
        c = st.commitment if st is not None else None
        if st is None or c is None or st.finalizing or st.done or now < st.retry_at:
            return []
        sigs = {s: sig for s, sig in self._sigs.get(c.model_hash, {}).items()
                if s in self.committee}
        if len(sigs) < self.params.quorum:
            return []
        if st.quorum_at is None:
            st.quorum_at = now
        # The committer finalises at once; the others step in one fallback slot apart, in the
        # rotation order after it, if it does not.
        n = len(self.committee)
        if self.me not in self.committee:
            return []
        start = self.committee.index(c.committer) if c.committer in self.committee else 0
        turn = (self.committee.index(self.me) - start) % n
        if now < st.quorum_at + turn * self.params.fallback_slot:
            return []
        st.finalizing = True
        chosen = dict(sorted(sigs.items(), key=lambda kv: int(kv[0], 16))[:64])
        return [Finalize(st.round, c.model_hash, chosen)]
