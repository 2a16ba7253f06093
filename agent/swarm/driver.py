"""The trio driver of the round engine: one vehicle in the swarm.

It feeds the engine what happens (gossip, attestations, fetch results, chain events, the
chain's clock) and carries out the engine's actions as tasks in one nursery. Training and
merging run on worker threads, chain calls on the chain's lane, so the trio loop always keeps
serving peers. Nothing a peer or the chain does ends a vehicle: every action catches its own
failures and turns them into an engine event or a counted, logged state. The daemon runs one
``Vehicle``; the simulator runs several in one process.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trio
from libp2p.peer.id import ID

from agent.p2p import announce, attest
from agent.p2p.announce import Announcement, Fleet
from agent.p2p.fetch import FetchError
from agent.p2p.identity import Identity, address_of_peer
from agent.p2p.node import Node, NodeConfig
from agent.p2p.store import Kind
from agent.swarm.chainview import AsyncLedger
from agent.swarm.combine import Combined, combine
from agent.swarm.engine import (
    Action,
    Adopt,
    Announce,
    Attest,
    Commit,
    Engine,
    EngineConfig,
    Fetch,
    FetchAnnouncement,
    Finalize,
    Sync,
    Train,
    Verify,
)
from agent.swarm.learner import Contributed, Learner, SitOut
from chain.errors import LedgerError
from chain.ledger import (
    ChainEvent,
    ChainParams,
    Entry,
    LedgerStatus,
    MemberChange,
    ParamsChange,
    RoundCommitment,
    RoundFinal,
    members,
)
from models.atomic import atomic_write_bytes
from models.codec import CodecError, decode
from models.layout import flat_hash, model_bytes, model_from_bytes
from models.merge import MergeConfig, MergeError

log = logging.getLogger(__name__)
KEEP_TIMINGS = 1000  # rounds of timing kept in memory by a long-running daemon
SYNC_BACKOFF_S = (0.5, 4.0)  # fetching a final model by hash: first wait, cap
FAST_POLL_S = 0.2  # chain polling of simulated fleets: a local node, rounds of seconds


@dataclass(frozen=True)
class VehicleConfig:
    local_steps: int
    merge: MergeConfig = MergeConfig()
    engine: EngineConfig = EngineConfig()  # the round's parameters come from the chain
    tick_s: float = 0.1
    poll_s: float = FAST_POLL_S  # chain polling interval (the daemon: [chain] poll_s)
    rounds: int | None = None  # stop contributing after this round count (the simulator)
    sit_out_retry_s: float = 5.0  # too few samples to train: look again this much later
    checkpoint: Path | None = None
    # Train the next round's local steps while this one is exchanged and committed (see
    # agent.swarm.learner); off where runs must repeat bit for bit (the in-process simulator).
    train_ahead: bool = False
    max_steps_ahead: int | None = None  # the most steps taken ahead (None: local_steps)


@dataclass(frozen=True)
class TrainAhead:
    """The driver's own action: start round ``round``'s local steps before its base is final."""
    round: int


@dataclass
class RoundTiming:
    round: int
    train_s: float = 0.0  # including steps taken ahead, while the previous round closed
    exchange_s: float = 0.0  # time with at least one payload fetch in flight
    merge_s: float = 0.0
    commit_s: float = 0.0  # the commit transaction, on the committer only
    finalize_s: float = 0.0  # the finalize transaction, on whoever sent it
    round_s: float = 0.0  # from the round's start to its final model here
    committed_by_me: bool = False


@dataclass(frozen=True)
class RoundDone:
    """A round this vehicle finished: final on chain, its model adopted here."""
    round: int
    model_hash: bytes
    committer: str  # "" when the vehicle synced the final model without seeing the commit
    contributions: int
    signers: int
    verified: bool  # we recomputed it ourselves (else a quorum did, and we fetched it)


@dataclass
class Vehicle:
    node: Node
    chain: AsyncLedger
    learner: Learner
    cfg: VehicleConfig
    model: np.ndarray  # the current base model (flat)
    # Threads for training, and for merging and checking payloads. Vehicles that share a
    # machine (the simulator) share the lanes, as they share its cores.
    train_lane: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(1))
    work_lane: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))
    on_round: Callable[[Vehicle, RoundDone], None] | None = None
    timings: dict[int, RoundTiming] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    engine: Engine | None = None
    stats: Counter[str] = field(default_factory=Counter)
    last_round: RoundDone | None = None  # the latest round final here
    ticks: int = 0  # engine ticks so far
    joined: trio.Event = field(default_factory=trio.Event)  # chain read, node listening
    busy_s: float = 0.0  # seconds the trainer has worked (training, and resting in its budget)
    train_cpu_s: float = 0.0  # CPU seconds of the trainer's thread (training only)
    chain_from_block: int = -1  # where it began reading the contract's events (the open round)

    def __post_init__(self) -> None:
        self.layout = self.learner.layout
        self.model_hash = bytes.fromhex(flat_hash(self.layout, self.model))
        self._learner_lock = trio.Lock()
        self._learner_state = self.learner.state()  # as of our last contribution: checkpointed
        self._stop_ahead = threading.Event()
        # Round, sum of the deltas held, count: the guess at that round's base (None: exact).
        self._guess: tuple[int, np.ndarray | None, int] = (-1, None, 0)
        self._merged: dict[bytes, Combined] = {}  # by model hash: the committer's and ours
        self._commitments: dict[int, RoundCommitment] = {}
        self._started: dict[int, float] = {}
        self._nursery: trio.Nursery | None = None
        self._fetching, self._fetching_since = 0, 0.0  # concurrent fetches, for timing
        self._clock_offset = time.time() - time.monotonic()
        # The registry as of the snapshot block we joined at, then its changes since.
        self._changes: list[MemberChange] = []
        self._snapshot_block = -1
        self._params: ChainParams | None = None  # the latest ParamsSet seen

    @property
    def address(self) -> str:
        return self.node.identity.address

    # --- life cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Join the fleet and take part in rounds until cancelled."""
        status, committee = await self._join_chain()
        if self.address not in committee:
            log.warning("vehicle_not_registered address=%s: announcements will be ignored",
                        self.address)
        engine = Engine(self.address, committee, status.params, self.cfg.engine)
        self.engine = engine
        self._put_model(self.model, self.model_hash)
        async with self.node.running(engine.check, engine.check_attestation), \
                trio.open_nursery() as nursery:
            self._nursery = nursery
            log.info("vehicle_joined address=%s round=%d model=%s from_block=%d", self.address,
                     status.rounds_final, status.latest_model.hex()[:12], self.chain_from_block)
            self.joined.set()
            if status.latest_model != self.model_hash:
                model = await self._fetch_model(status.rounds_final - 1, status.latest_model)
                self._set_model(model, status.latest_model)
                log.info("synced round=%d model=%s", status.rounds_final - 1,
                         status.latest_model.hex()[:12])
                if self.on_round is not None and status.rounds_final > 0:
                    # Final before we joined: we took a quorum's word for it (a sync).
                    self.on_round(self, RoundDone(status.rounds_final - 1, status.latest_model,
                                                  "", 0, 0, False))
            self._act(engine.start(status.rounds_final, self.model_hash, status.opened_at,
                                   self._now()))
            # From the open round's first block: its commits (and so its expiries) replay into
            # the engine; registry and parameter events up to the snapshot are in it already.
            nursery.start_soon(self._chain_in, self.chain_from_block)
            nursery.start_soon(self._gossip_in)
            nursery.start_soon(self._attestations_in)
            nursery.start_soon(self._ticker)

    async def _join_chain(self) -> tuple[LedgerStatus, tuple[str, ...]]:
        """The contract's state (status, vehicles, observers) as of one block, the head, and
        where to follow its events from: the open round's first block. Never a replay of the
        whole history (a year of 2 s blocks is ~1,600 pages of logs)."""
        ledger = self.chain.ledger
        head = await self.chain.run(ledger.head)
        status = await self.chain.run(ledger.status, head)
        committee = tuple(await self.chain.run(ledger.vehicles, head))
        observers = await self.chain.run(ledger.observers, head)
        self._snapshot_block = head
        self._changes = [*(MemberChange(a, "vehicle", True, head) for a in committee),
                         *(MemberChange(a, "observer", True, head) for a in observers)]
        self.node.set_allowed([*committee, *observers])
        self.chain_from_block = await self.chain.run(ledger.first_block_at, status.opened_at, head)
        return status, committee

    def _now(self) -> float:
        """Our estimate of the chain's clock: the pending block's timestamp at the last poll,
        advanced by our monotonic clock (the wall clock until the first poll). A dev chain can
        run ahead of the wall clock (its blocks are a second apart at least)."""
        return time.monotonic() + self._clock_offset

    def _act(self, actions: Sequence[Action | TrainAhead]) -> None:
        assert self._nursery is not None
        for a in actions:
            self._nursery.start_soon(self._do, a)

    async def _do(self, a: Action | TrainAhead) -> None:
        try:
            await self._dispatch(a)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug or an unforeseen failure: one action lost, not a vehicle
            self.stats["action_failed"] += 1
            log.exception("action_failed action=%s error=%s", type(a).__name__, e)

    async def _dispatch(self, a: Action | TrainAhead) -> None:
        if isinstance(a, Train):
            await self._train(a)
        elif isinstance(a, TrainAhead):
            await self._train_ahead(a)
        elif isinstance(a, Announce):
            await self.node.publish(a.announcement)
        elif isinstance(a, Fetch):
            await self._fetch(a)
        elif isinstance(a, FetchAnnouncement):
            await self._fetch_announcement(a)
        elif isinstance(a, Commit):
            await self._commit(a)
        elif isinstance(a, Verify):
            await self._verify(a)
        elif isinstance(a, Attest):
            await self._attest(a)
        elif isinstance(a, Finalize):
            await self._finalize(a)
        elif isinstance(a, Adopt):
            await self._adopt_verified(a)
        elif isinstance(a, Sync):
            await self._sync(a)

    @property
    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    # --- inputs -------------------------------------------------------------------------------

    async def _gossip_in(self) -> None:
        async for ann in self.node.announcements:
            self._act(self._engine.announced(ann, self._now()))

    async def _attestations_in(self) -> None:
        async for att in self.node.attestations:
            self._act(self._engine.attested(att, self._now()))

    async def _chain_in(self, from_block: int) -> None:
        async for event, chain_time in self.chain.follow(from_block, self.cfg.poll_s):
            if event is None:  # the pending block's time, read just now (whole seconds)
                self._clock_offset = chain_time + 0.5 - time.monotonic()
            if event is not None:
                self._on_chain(event)
            else:
                self._apply_membership()

    def _apply_membership(self) -> None:
        """Registry and parameter changes take effect once a poll's events are all in, so the
        replay of history at start never applies a past state."""
        engine = self._engine
        if self._params is not None and self._params != engine.params:
            log.info("params_changed %s", self._params)
            engine.set_params(self._params)
        committee = tuple(members(self._changes))
        if self._changes and committee != engine.committee:
            log.info("committee_changed vehicles=%d", len(committee))
            engine.set_committee(committee)
        allowed = frozenset([*committee, *members(self._changes, role="observer")])
        if self._changes and allowed != self.node.gate.allowed:
            log.info("admission_changed allowed=%d", len(allowed))
            self.node.set_allowed(allowed)

    def _on_chain(self, e: ChainEvent) -> None:
        engine, now = self._engine, self._now()
        if isinstance(e, MemberChange | ParamsChange) and e.block <= self._snapshot_block:
            return  # the snapshot we joined with holds it
        if isinstance(e, MemberChange):
            self._changes.append(e)
        elif isinstance(e, ParamsChange):
            self._params = e.params
        elif isinstance(e, RoundCommitment):
            self._commitments[e.round] = e
            self._act(engine.committed(e, now))
        elif isinstance(e, RoundFinal):
            self._act(engine.finalized(e, now))

    async def _ticker(self) -> None:
        while True:
            self._engine.alive = frozenset(self.node.connected_addresses())
            self._act(self._engine.tick(self._now()))
            self.ticks += 1  # the daemon's watchdog: the round engine is being driven
            await trio.sleep(self.cfg.tick_s)

    # --- actions ------------------------------------------------------------------------------

    def _timing(self, round_: int) -> RoundTiming:
        return self.timings.setdefault(round_, RoundTiming(round_))

    async def _train(self, a: Train) -> None:
        self._started[a.round] = time.monotonic()
        self._stop_ahead.set()  # steps taken ahead end at the next step; we take them over
        base = self.model

        def contribute() -> tuple[Contributed, float]:
            t0 = time.perf_counter()  # timed in the thread: waiting for the lane is not training
            c0 = time.thread_time()
            try:
                out = self.learner.contribute(base, a.base_hash, a.round, self.cfg.local_steps,
                                              author=bytes.fromhex(self.address[2:]))
                self._learner_state = self.learner.state()
                return out, time.perf_counter() - t0
            finally:
                self.busy_s += time.perf_counter() - t0
                self.train_cpu_s += time.thread_time() - c0

        while True:
            async with self._learner_lock:
                # Abandon on cancel: a vehicle shutting down must not wait for its training
                # thread. (trio-typing's stale stubs, which libp2p pulls in, lack
                # abandon_on_cancel.)
                try:
                    out, seconds = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                        contribute, limiter=self.train_lane, abandon_on_cancel=True)
                    break
                except SitOut as e:
                    self.stats["sat_out"] += 1
                    log.info("sat_out round=%d reason=%s", a.round, e)
                except (ValueError, RuntimeError) as e:  # e.g. a NaN delta: sit this round out
                    self.stats["train_failed"] += 1
                    log.error("train_failed round=%d error=%s", a.round, e)
                    return
            # Samples may arrive while the round is open: look again, until it closes.
            await trio.sleep(self.cfg.sit_out_retry_s)
            if self._engine.round != a.round:
                return
        self._timing(a.round).train_s += seconds
        key = self.node.store.put(Kind.DELTA, out.payload)
        ann = announce.sign(self.node.identity, self.node.fleet, a.round, a.base_hash, key,
                            len(out.payload), out.samples, out.loss)
        log.info("trained round=%d loss=%.4f bytes=%d", a.round, out.loss, len(out.payload))
        self._act(self._engine.contributed(ann, self._now()))
        if self._may_train_ahead(a.round + 1):
            self._stop_ahead = threading.Event()
            self._act([TrainAhead(a.round + 1)])
            self._guess_ahead(a.round, decode(out.payload, self.layout).values)  # ours, as sent

    def _may_train_ahead(self, round_: int) -> bool:
        """Whether to start ``round_`` now: only while the round before it is still open (a
        late contribution's next round has begun already), and not past the last round."""
        return (self.cfg.train_ahead and self._engine.round == round_ - 1
                and (self.cfg.rounds is None or round_ < self.cfg.rounds))

    async def _train_ahead(self, a: TrainAhead) -> None:
        """Round ``a.round``'s first steps, until its ``Train`` arrives (which stops them)."""
        stop = self._stop_ahead

        def ahead() -> tuple[int, float]:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return (self.learner.train_ahead(a.round, self.cfg.local_steps, stop.is_set,
                                                 self.cfg.max_steps_ahead),
                        time.perf_counter() - t0)
            finally:
                self.busy_s += time.perf_counter() - t0
                self.train_cpu_s += time.thread_time() - c0

        async with self._learner_lock:
            if stop.is_set() or not self._may_train_ahead(a.round):  # it began meanwhile
                return
            try:
                steps, seconds = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                    ahead, limiter=self.train_lane, abandon_on_cancel=True)
            except (ValueError, RuntimeError) as e:
                self.learner.drop_ahead()
                self.stats["train_failed"] += 1
                log.error("train_ahead_failed round=%d error=%s", a.round, e)
                return
        self._timing(a.round).train_s += seconds
        self.stats["steps_ahead"] += steps
        log.debug("trained_ahead round=%d steps=%d", a.round, steps)

    def _peer_of(self, address: str) -> list[ID]:
        return [p for p in self.node.connected() if address_of_peer(p) == address]

    async def _fetch(self, a: Fetch) -> None:
        round_ = self._engine.round
        if self._fetching == 0:
            self._fetching_since = time.monotonic()
        self._fetching += 1
        try:
            payload = await self.node.fetch(Kind.DELTA, a.payload_hash, a.size,
                                            prefer=self._peer_of(a.sender))
            ann = self._engine.announcement_for(a.payload_hash, a.sender)
            values = await trio.to_thread.run_sync(self._check_payload, payload, ann,
                                                   limiter=self.work_lane)
        except FetchError as e:
            log.info("fetch_failed payload=%s error=%s", a.payload_hash.hex()[:12], e)
            self._act(self._engine.fetched(a.payload_hash, False, self._now()))
            return
        except CodecError as e:
            self.node.stats["payload_invalid"] += 1
            log.warning("payload_invalid payload=%s sender=%s error=%s",
                        a.payload_hash.hex()[:12], a.sender, e)
            self._act(self._engine.payload_invalid(a.payload_hash, a.sender))
            return
        finally:
            self._fetching -= 1
            if self._fetching == 0 and round_ is not None:
                self._timing(round_).exchange_s += time.monotonic() - self._fetching_since
        if ann is not None:
            self._guess_ahead(ann.round, values)
        self._act(self._engine.fetched(a.payload_hash, True, self._now()))

    def _check_payload(self, payload: bytes, ann: Announcement | None) -> np.ndarray:
        """A payload must decode and say what its announcement says (round, base, author);
        returns its delta."""
        got = decode(payload, self.layout)
        if ann is None:
            return got.values
        if got.round != ann.round or got.base_hash != ann.base_hash:
            raise CodecError(f"payload is for round {got.round}, announced for {ann.round}")
        if got.author != bytes.fromhex(ann.sender[2:]):
            raise CodecError(f"payload's author 0x{got.author.hex()} is not its announcer "
                             f"{ann.sender}")
        return got.values

    async def _fetch_announcement(self, a: FetchAnnouncement) -> None:
        try:
            raw = await self.node.fetch(Kind.ANNOUNCEMENT, a.payload_hash, announce.SIZE)
            ann: Announcement | None = announce.parse(raw)
        except (FetchError, announce.AnnounceError) as e:
            log.info("announcement_fetch_failed payload=%s error=%s", a.payload_hash.hex()[:12], e)
            ann = None
        self._act(self._engine.announcement_fetched(ann, a.payload_hash, self._now()))

    async def _merge(self, round_: int, base_hash: bytes,
                     contributions: list[tuple[bytes, int]]) -> Combined:
        """Our model plus the merge of (payload hash, samples) in the order given."""
        if base_hash != self.model_hash:
            raise MergeError(f"round {round_} builds on {base_hash.hex()[:12]}, but this vehicle "
                             f"holds {self.model_hash.hex()[:12]}")
        payloads = []
        for h, samples in contributions:
            data = self.node.store.get(Kind.DELTA, h)
            if data is None:  # evicted from the store since it was fetched
                raise MergeError(f"payload {h.hex()[:12]} is no longer in the store")
            payloads.append((data, samples))
        base = self.model

        def timed_combine() -> tuple[Combined, float]:
            t0 = time.perf_counter()  # timed in the thread, like training
            return combine(base, payloads, self.layout, self.cfg.merge), time.perf_counter() - t0

        combined, seconds = await trio.to_thread.run_sync(timed_combine, limiter=self.work_lane)
        self._timing(round_).merge_s += seconds
        self._merged = {**{k: v for k, v in self._merged.items() if k != self.model_hash},
                        combined.model_hash: combined}
        if len(self._merged) > 4:  # a few candidates of the open round at most
            self._merged.pop(next(iter(self._merged)))
        return combined

    async def _commit(self, a: Commit) -> None:
        entries = [Entry(x.sender, x.samples, x.payload_hash) for x in a.contributions]
        try:
            combined = await self._merge(a.round, a.base_hash,
                                         [(x.payload_hash, x.samples) for x in a.contributions])
        except (MergeError, CodecError) as e:
            log.error("commit_impossible round=%d error=%s", a.round, e)
            self._engine.commit_failed(self._now())
            return
        self._put_model(combined.model, combined.model_hash)
        t0 = time.monotonic()
        try:
            c = await self.chain.run(self.chain.ledger.commit_round, a.round, a.base_hash,
                                     combined.model_hash, entries)
        except LedgerError as e:  # not our slot after all, or a commit is live
            holder, end = self._engine.slot(self._now())
            log.info("commit_not_landed round=%d chain_time=%.1f slot_holder=%s slot_end=%.1f "
                     "error=%s", a.round, self._now(), holder, end, e)
            self._engine.commit_failed(self._now())
            return
        t = self._timing(a.round)
        t.commit_s, t.committed_by_me = time.monotonic() - t0, True
        log.info("committed round=%d contributions=%d model=%s", a.round, len(entries),
                 combined.model_hash.hex()[:12])
        self._commitments[c.round] = c
        self._ahead_onto(c.round + 1, combined.model)
        self._act(self._engine.committed(c, self._now()))

    async def _verify(self, a: Verify) -> None:
        c = a.commitment
        try:
            combined = await self._merge(c.round, c.base_hash,
                                         [(e.payload_hash, e.samples) for e in c.contributions])
            got: bytes | None = combined.model_hash
        except (MergeError, CodecError) as e:
            log.error("verify_failed round=%d error=%s", c.round, e)
            got = None
        if got != c.model_hash:
            log.error("verify_mismatch round=%d committer=%s committed=%s ours=%s", c.round,
                      c.committer, c.model_hash.hex()[:12], got.hex()[:12] if got else "-")
        else:
            self._put_model(combined.model, combined.model_hash)
            self._ahead_onto(c.round + 1, combined.model)
        self._act(self._engine.verified(got, self._now()))

    def _ahead_onto(self, round_: int, base: np.ndarray) -> None:
        """Steps taken ahead for ``round_`` go on from its base, verified here, not yet final."""
        if self.cfg.train_ahead:
            self._guess = (round_, None, 0)  # exact now: no more guesses for this round
            self.learner.rebase_ahead(round_, base)

    def _guess_ahead(self, round_: int, values: np.ndarray) -> None:
        """Before round ``round_`` is committed, steps taken ahead for the next round go on
        from a guess at its merge: our base plus the mean of the deltas we hold so far (the
        verified merge replaces it; the final model corrects whatever it got wrong)."""
        if not self.cfg.train_ahead or self._engine.round != round_:
            return
        r, total, n = self._guess
        if r == round_ + 1 and total is None:
            return  # verified already
        total = values.copy() if r != round_ + 1 or total is None else total + values
        n = (n if r == round_ + 1 else 0) + 1
        self._guess = (round_ + 1, total, n)
        self.learner.rebase_ahead(round_ + 1, self.model + total / n)

    async def _attest(self, a: Attest) -> None:
        att = attest.sign(self.node.identity, self.node.fleet, a.round, a.model_hash)
        self._act(self._engine.attested(att, self._now()))
        await self.node.publish_attestation(att)

    async def _finalize(self, a: Finalize) -> None:
        t0 = time.monotonic()
        try:
            f = await self.chain.run(self.chain.ledger.finalize_round, a.round, a.model_hash,
                                     a.signatures)
        except LedgerError as e:  # someone finalised first, or the commit expired
            log.info("finalize_not_landed round=%d error=%s", a.round, e)
            self._engine.finalize_failed(self._now())
            return
        self._timing(a.round).finalize_s = time.monotonic() - t0
        log.info("finalized round=%d signers=%d model=%s", a.round, len(f.signers),
                 f.model_hash.hex()[:12])
        self._act(self._engine.finalized(f, self._now()))

    async def _fetch_model(self, round_: int, model_hash: bytes) -> np.ndarray:
        """The model named ``model_hash`` from any peer, retrying with backoff until we have
        it (cancellable: a newer final round or shutdown ends the wait)."""
        size = 8 + 4 * self.layout.size
        delay, attempt = SYNC_BACKOFF_S[0], 0
        while True:
            attempt += 1
            try:
                data = await self.node.fetch(Kind.MODEL, model_hash, size)
                return model_from_bytes(self.layout, data)
            except (FetchError, ValueError) as e:
                self.stats["sync_retry"] += 1
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("sync_waiting round=%d model=%s attempt=%d error=%s", round_,
                                model_hash.hex()[:12], attempt, e)
            await trio.sleep(delay)
            delay = min(SYNC_BACKOFF_S[1], delay * 2)

    async def _sync(self, a: Sync) -> None:
        """Adopt a final model we did not verify ourselves: a quorum did; fetch it by hash."""
        model = await self._fetch_model(a.round, a.model_hash)
        log.info("synced round=%d model=%s", a.round, a.model_hash.hex()[:12])
        c = self._commitments.get(a.round)
        if c is None or c.model_hash != a.model_hash:
            c = None
        await self._adopt(model, RoundDone(a.round, a.model_hash, c.committer if c else "",
                                           len(c.contributions) if c else 0, 0, False),
                          a.opened_at)

    async def _adopt_verified(self, a: Adopt) -> None:
        f = a.final
        combined = self._merged.get(f.model_hash)
        if combined is None:  # cannot happen: the engine adopts only what we merged
            await self._sync(Sync(f.round, f.model_hash, f.finalized_at))
            return
        c = self._commitments.get(f.round)
        await self._adopt(combined.model, RoundDone(
            f.round, f.model_hash, c.committer if c else "", len(c.contributions) if c else 0,
            len(f.signers), True), f.finalized_at)

    def _put_model(self, model: np.ndarray, model_hash: bytes) -> None:
        self.node.store.put(Kind.MODEL, model_bytes(self.layout, model), key=model_hash)

    def _set_model(self, model: np.ndarray, model_hash: bytes) -> None:
        self.node.store.unpin(Kind.MODEL, self.model_hash)
        self.model, self.model_hash = model, model_hash
        self.node.store.put(Kind.MODEL, model_bytes(self.layout, model), key=model_hash, pin=True)

    async def _adopt(self, model: np.ndarray, done: RoundDone, opened_at: float) -> None:
        """Round ``done.round`` is final here: keep its model, checkpoint, start the next."""
        if self._engine.round is not None and done.round < self._engine.round:
            return  # a sync that a newer round overtook
        self._set_model(model, done.model_hash)
        started = self._started.pop(done.round, None)
        if started is not None:
            self._timing(done.round).round_s = time.monotonic() - started
        self._started = {r: t for r, t in self._started.items() if r > done.round}
        self._commitments = {r: c for r, c in self._commitments.items() if r > done.round}
        for r in [r for r in self.timings if r < done.round - KEEP_TIMINGS]:
            del self.timings[r]
        if self.cfg.checkpoint is not None:
            await trio.to_thread.run_sync(save_vehicle_checkpoint, self.cfg.checkpoint,
                                          done.round, self.model, self._learner_state)
        self.last_round = done
        if self.on_round is not None:
            self.on_round(self, done)
        if self.cfg.rounds is not None and done.round + 1 >= self.cfg.rounds:
            self.done.set()
            return
        self._act(self._engine.start(done.round + 1, done.model_hash, opened_at, self._now()))


def assemble(identity: Identity, fleet: Fleet, chain: AsyncLedger, learner: Learner,
             node_cfg: NodeConfig, cfg: VehicleConfig, factory_model: np.ndarray,
             on_round: Callable[[Vehicle, RoundDone], None] | None = None,
             lanes: tuple[trio.CapacityLimiter, trio.CapacityLimiter] | None = None
             ) -> tuple[Vehicle, int]:
    """One vehicle wired together: its libp2p node, its chain, its learner, and its model:
    from its checkpoint if it has one (a restart), else ``factory_model``. Returns the vehicle
    and the last round it finished (-1 when factory-fresh). ``lanes``: the training and work
    lanes, when vehicles share a machine's cores (the simulator). The daemon and the simulator
    both build their vehicles here."""
    model, round_ = factory_model, -1
    if cfg.checkpoint is not None and cfg.checkpoint.exists():
        round_, model = load_vehicle_checkpoint(cfg.checkpoint, learner)
    node = Node(identity, fleet, node_cfg)
    vehicle = Vehicle(node, chain, learner, cfg, model, on_round=on_round)
    if lanes is not None:
        vehicle.train_lane, vehicle.work_lane = lanes
    return vehicle, round_


def save_vehicle_checkpoint(path: Path, round_: int, model: np.ndarray,
                            state: dict[str, object]) -> None:
    """The vehicle's state after ``round_`` (``state``: the learner's, ``Learner.state``),
    written atomically (a crash leaves the old one)."""
    blob = {"round": round_, "model": torch.from_numpy(model.copy()),
            "opt": state["opt"], "residual": torch.from_numpy(np.asarray(state["residual"])),
            "rng": state["rng"], "step": state["step"],
            # Following the fleet (fleet momentum, lookahead): (round, arrays...) or None.
            "mine": _tensors(state.get("mine")), "trend": _tensors(state.get("trend"))}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue(), mode=0o600)


def load_vehicle_checkpoint(path: Path, learner: Learner) -> tuple[int, np.ndarray]:
    """Restore ``learner`` from ``path``; returns (round, model). Raises ValueError if corrupt."""
    try:
        blob = torch.load(path, weights_only=True)
        model = blob["model"].numpy().astype(np.float32)
        learner.restore({"opt": blob["opt"], "residual": blob["residual"].numpy(),
                         "rng": blob["rng"], "step": blob["step"],
                         # absent from a checkpoint written before they were kept
                         "mine": _arrays(blob.get("mine")), "trend": _arrays(blob.get("trend"))})
        return int(blob["round"]), model
    except (OSError, RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"vehicle checkpoint {path}: unreadable ({type(e).__name__}: {e})"
                         ) from None


def _tensors(kept: object) -> tuple[object, ...] | None:
    """A learner's (round, arrays...) as torch.load(weights_only=True) reads it back."""
    if not isinstance(kept, tuple):
        return None
    return (int(kept[0]), *(torch.from_numpy(np.array(a, np.float32)) for a in kept[1:]))


def _arrays(kept: object) -> tuple[object, ...] | None:
    if not isinstance(kept, tuple):
        return None
    return (int(kept[0]), *(a.numpy() for a in kept[1:]))
