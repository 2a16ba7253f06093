"""The trio driver of the round engine: one vehicle in the swarm.

It feeds the engine what happens (gossip, fetch results, chain events, time) and carries out
the engine's actions as tasks in one nursery. Training and merging run on worker threads, chain
calls on the chain's lane, so the trio loop always keeps serving peers. The daemon runs one
``Vehicle``; the simulator runs several in one process.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import trio
from libp2p.peer.id import ID

from agent.p2p import announce
from agent.p2p.announce import Announcement
from agent.p2p.fetch import FetchError
from agent.p2p.identity import address_of_peer
from agent.p2p.node import Node
from agent.p2p.store import Kind
from agent.swarm.chainview import AsyncLedger
from agent.swarm.combine import Combined, combine
from agent.swarm.engine import (
    Action,
    Announce,
    Commit,
    Engine,
    EngineConfig,
    Fetch,
    FetchAnnouncement,
    Sync,
    Train,
    Verify,
)
from agent.swarm.learner import Contributed, Learner
from chain.errors import LedgerError
from chain.ledger import RoundCommitment
from models.atomic import atomic_write_bytes
from models.codec import CodecError, decode
from models.layout import flat_hash, model_bytes, model_from_bytes
from models.merge import MergeConfig, MergeError

log = logging.getLogger(__name__)
KEEP_TIMINGS = 1000  # rounds of timing kept in memory by a long-running daemon


@dataclass(frozen=True)
class VehicleConfig:
    local_steps: int
    merge: MergeConfig = MergeConfig()
    engine: EngineConfig = EngineConfig()  # min_peers comes from the chain
    tick_s: float = 0.1
    poll_s: float = 0.2  # chain polling interval
    sync_retry_s: float = 1.0
    rounds: int | None = None  # stop contributing after this round count (the simulator)
    checkpoint: Path | None = None


@dataclass
class RoundTiming:
    round: int
    train_s: float = 0.0
    exchange_s: float = 0.0  # time with at least one payload fetch in flight
    merge_s: float = 0.0
    commit_s: float = 0.0  # the commit transaction, on the committer only
    round_s: float = 0.0  # from the round's start to its verified commitment
    committed_by_me: bool = False


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
    on_round: Callable[[Vehicle, RoundCommitment], None] | None = None
    timings: dict[int, RoundTiming] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    engine: Engine | None = None

    def __post_init__(self) -> None:
        self.layout = self.learner.layout
        self.model_hash = bytes.fromhex(flat_hash(self.layout, self.model))
        self._learner_lock = trio.Lock()
        self._merged: dict[tuple[int, tuple[bytes, ...]], Combined] = {}
        self._started: dict[int, float] = {}
        self._nursery: trio.Nursery | None = None
        self._fetching, self._fetching_since = 0, 0.0  # concurrent fetches, for timing

    @property
    def address(self) -> str:
        return self.node.identity.address

    # --- life cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Join the fleet and take part in rounds until cancelled."""
        ledger = self.chain.ledger
        head = await self.chain.run(ledger.head)
        status = await self.chain.run(ledger.status)
        committee = tuple(await self.chain.run(ledger.vehicles))
        if self.address not in committee:
            log.warning("vehicle_not_registered address=%s: announcements will be ignored",
                        self.address)
        engine = Engine(self.address, committee,
                        replace(self.cfg.engine, min_peers=max(1, status.min_peers)))
        self.engine = engine
        self._put_model(self.model, self.model_hash)
        async with self.node.running(engine.check), trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._gossip_in)
            nursery.start_soon(self._chain_in, head + 1)
            nursery.start_soon(self._ticker)
            log.info("vehicle_joined address=%s round=%d model=%s", self.address,
                     status.rounds_committed, status.latest_model.hex()[:12])
            if status.latest_model == self.model_hash:
                self._act(engine.start(status.rounds_committed, self.model_hash, self._now()))
            else:
                self._act([Sync(status.rounds_committed - 1, status.latest_model)])

    def _now(self) -> float:
        return time.monotonic()

    def _act(self, actions: list[Action]) -> None:
        assert self._nursery is not None
        for a in actions:
            self._nursery.start_soon(self._do, a)

    async def _do(self, a: Action) -> None:
        if isinstance(a, Train):
            await self._train(a)
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

    async def _chain_in(self, from_block: int) -> None:
        async for c in self.chain.follow(from_block, self.cfg.poll_s):
            self._act(self._engine.committed(c, self._now()))

    async def _ticker(self) -> None:
        while True:
            self._engine.alive = frozenset(self.node.connected_addresses())
            self._act(self._engine.tick(self._now()))
            await trio.sleep(self.cfg.tick_s)

    # --- actions ------------------------------------------------------------------------------

    def _timing(self, round_: int) -> RoundTiming:
        return self.timings.setdefault(round_, RoundTiming(round_))

    async def _train(self, a: Train) -> None:
        self._started[a.round] = self._now()
        base = self.model
        def contribute() -> tuple[Contributed, float]:
            t0 = time.perf_counter()  # timed in the thread: waiting for the lane is not training
            out = self.learner.contribute(base, a.base_hash, a.round, self.cfg.local_steps)
            return out, time.perf_counter() - t0

        async with self._learner_lock:
            # Abandon on cancel: a vehicle shutting down must not wait for its training thread.
            # (trio-typing's stale stubs, which libp2p pulls in, lack abandon_on_cancel.)
            out, seconds = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                contribute, limiter=self.train_lane, abandon_on_cancel=True)
        self._timing(a.round).train_s = seconds
        key = self.node.store.put(Kind.DELTA, out.payload)
        ann = announce.sign(self.node.identity, self.node.fleet, a.round, a.base_hash, key,
                            len(out.payload), out.samples, out.loss)
        log.info("trained round=%d loss=%.4f bytes=%d", a.round, out.loss, len(out.payload))
        self._act(self._engine.contributed(ann, self._now()))

    def _peer_of(self, address: str) -> list[ID]:
        return [p for p in self.node.connected() if address_of_peer(p) == address]

    async def _fetch(self, a: Fetch) -> None:
        round_ = self._engine.round
        if self._fetching == 0:
            self._fetching_since = self._now()
        self._fetching += 1
        try:
            payload = await self.node.fetch(Kind.DELTA, a.payload_hash, a.size,
                                            prefer=self._peer_of(a.sender))
            ann = self._engine.announcement(a.payload_hash)
            await trio.to_thread.run_sync(self._check_payload, payload, ann,
                                          limiter=self.work_lane)
        except FetchError as e:
            log.info("fetch_failed payload=%s error=%s", a.payload_hash.hex()[:12], e)
            self._act(self._engine.fetched(a.payload_hash, False, self._now()))
            return
        except CodecError as e:
            self.node.stats["payload_invalid"] += 1
            log.warning("payload_invalid payload=%s sender=%s error=%s",
                        a.payload_hash.hex()[:12], a.sender, e)
            self._act(self._engine.payload_invalid(a.payload_hash))
            return
        finally:
            self._fetching -= 1
            if self._fetching == 0 and round_ is not None:
                self._timing(round_).exchange_s += self._now() - self._fetching_since
        self._act(self._engine.fetched(a.payload_hash, True, self._now()))

    def _check_payload(self, payload: bytes, ann: Announcement | None) -> None:
        """A payload must decode and say what its announcement says (round and base)."""
        got = decode(payload, self.layout)
        if ann is not None and (got.round != ann.round or got.base_hash != ann.base_hash):
            raise CodecError(f"payload is for round {got.round}, announced for {ann.round}")

    async def _fetch_announcement(self, a: FetchAnnouncement) -> None:
        try:
            raw = await self.node.fetch(Kind.ANNOUNCEMENT, a.payload_hash, announce.SIZE)
            ann: Announcement | None = announce.parse(raw)
        except (FetchError, announce.AnnounceError) as e:
            log.info("announcement_fetch_failed payload=%s error=%s", a.payload_hash.hex()[:12], e)
            ann = None
        self._act(self._engine.announcement_fetched(ann, a.payload_hash, self._now()))

    async def _merge(self, round_: int, base_hash: bytes,
                     contributions: tuple[Announcement, ...]) -> Combined:
        """Our model plus the merge of ``contributions``; the committer's own merge is reused
        when it verifies its commitment."""
        if base_hash != self.model_hash:
            raise MergeError(f"round {round_} builds on {base_hash.hex()[:12]}, but this vehicle "
                             f"holds {self.model_hash.hex()[:12]}")
        key = (round_, tuple(a.payload_hash for a in contributions))
        if key in self._merged:
            return self._merged[key]
        payloads = []
        for a in contributions:
            data = self.node.store.get(Kind.DELTA, a.payload_hash)
            assert data is not None, "the engine asks to merge only payloads we hold"
            payloads.append((data, a.samples))
        base = self.model

        def timed_combine() -> tuple[Combined, float]:
            t0 = time.perf_counter()  # timed in the thread, like training
            return combine(base, payloads, self.layout, self.cfg.merge), time.perf_counter() - t0

        combined, seconds = await trio.to_thread.run_sync(timed_combine, limiter=self.work_lane)
        self._timing(round_).merge_s += seconds
        self._merged = {key: combined}
        return combined

    async def _commit(self, a: Commit) -> None:
        try:
            combined = await self._merge(a.round, a.base_hash, a.contributions)
        except MergeError as e:
            log.error("commit_impossible round=%d error=%s", a.round, e)
            self._engine.commit_failed()
            return
        self._put_model(combined.model, combined.model_hash)
        t0 = self._now()
        try:
            c = await self.chain.run(self.chain.ledger.commit_round, a.round, a.base_hash,
                                     combined.model_hash,
                                     [x.payload_hash for x in a.contributions])
        except LedgerError as e:  # usually: another committer was first
            log.info("commit_not_landed round=%d error=%s", a.round, e)
            self._engine.commit_failed()
            return
        t = self._timing(a.round)
        t.commit_s, t.committed_by_me = self._now() - t0, True
        log.info("committed round=%d contributions=%d model=%s", a.round, len(a.contributions),
                 combined.model_hash.hex()[:12])
        self._act(self._engine.committed(c, self._now()))

    async def _verify(self, a: Verify) -> None:
        c = a.commitment
        try:
            combined = await self._merge(c.round, c.base_hash, a.contributions)
            ok = combined.model_hash == c.model_hash
        except (MergeError, CodecError) as e:
            log.error("verify_failed round=%d error=%s", c.round, e)
            ok = False
        if not ok:
            log.error("verify_mismatch round=%d committer=%s committed=%s", c.round, c.committer,
                      c.model_hash.hex()[:12])
            self._act(self._engine.verified(False))
            return
        self._act(self._engine.verified(True))
        await self._adopt(combined.model, c)

    async def _sync(self, a: Sync) -> None:
        """Fetch the model the chain names by its hash, from any peer, until we have it."""
        size = 8 + 4 * self.layout.size
        attempt = 0
        while True:
            attempt += 1
            try:
                data = await self.node.fetch(Kind.MODEL, a.model_hash, size)
                model = model_from_bytes(self.layout, data)
                break
            except (FetchError, ValueError) as e:
                if attempt == 1 or attempt % 30 == 0:
                    log.warning("sync_waiting round=%d model=%s attempt=%d error=%s", a.round,
                                a.model_hash.hex()[:12], attempt, e)
                await trio.sleep(self.cfg.sync_retry_s)
        log.info("synced round=%d model=%s attempts=%d", a.round, a.model_hash.hex()[:12],
                 attempt)
        if a.round < 0:  # the genesis model: nothing committed yet
            self._set_model(model, a.model_hash)
            self._act(self._engine.start(0, a.model_hash, self._now()))
            return
        c = RoundCommitment(a.round, "", b"", a.model_hash, b"", (), 0)
        await self._adopt(model, c)

    def _put_model(self, model: np.ndarray, model_hash: bytes) -> None:
        self.node.store.put(Kind.MODEL, model_bytes(self.layout, model), key=model_hash)

    def _set_model(self, model: np.ndarray, model_hash: bytes) -> None:
        self.node.store.unpin(Kind.MODEL, self.model_hash)
        self.model, self.model_hash = model, model_hash
        self.node.store.put(Kind.MODEL, model_bytes(self.layout, model), key=model_hash, pin=True)

    async def _adopt(self, model: np.ndarray, c: RoundCommitment) -> None:
        """Round ``c.round`` is done here: keep its model, checkpoint, start the next round."""
        if self._engine.round is not None and c.round < self._engine.round:
            return  # a sync that a newer round overtook
        self._set_model(model, c.model_hash)
        started = self._started.pop(c.round, None)
        if started is not None:
            self._timing(c.round).round_s = self._now() - started
        self._started = {r: t for r, t in self._started.items() if r > c.round}
        for r in [r for r in self.timings if r < c.round - KEEP_TIMINGS]:
            del self.timings[r]
        if self.cfg.checkpoint is not None:
            await trio.to_thread.run_sync(save_vehicle_checkpoint, self.cfg.checkpoint,
                                          c.round, self.model, self.learner)
        if self.on_round is not None:
            self.on_round(self, c)
        if self.cfg.rounds is not None and c.round + 1 >= self.cfg.rounds:
            self.done.set()
            return
        self._act(self._engine.start(c.round + 1, c.model_hash, self._now()))


def save_vehicle_checkpoint(path: Path, round_: int, model: np.ndarray, learner: Learner) -> None:
    """The vehicle's state after ``round_``, written atomically (a crash leaves the old one)."""
    state = learner.state()
    blob = {"round": round_, "model": torch.from_numpy(model.copy()),
            "opt": state["opt"], "residual": torch.from_numpy(np.asarray(state["residual"])),
            "rng": state["rng"], "step": state["step"]}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue(), mode=0o600)


def load_vehicle_checkpoint(path: Path, learner: Learner) -> tuple[int, np.ndarray]:
    """Restore ``learner`` from ``path``; returns (round, model). Raises ValueError if corrupt."""
    try:
        blob = torch.load(path, weights_only=True)
        model = blob["model"].numpy().astype(np.float32)
        learner.restore({"opt": blob["opt"], "residual": blob["residual"].numpy(),
                         "rng": blob["rng"], "step": blob["step"]})
        return int(blob["round"]), model
    except (OSError, RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"vehicle checkpoint {path}: unreadable ({type(e).__name__}: {e})"
                         ) from None
