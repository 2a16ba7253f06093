"""One vehicle's learner, built from its config: the swarm member that ``swarmdrive learn``
runs under systemd and that ``swarmdrive sim --processes`` starts N times.

Tasks, all in one nursery: the round engine's driver (``agent.swarm.driver.Vehicle``), one
intake task per source, the installer (each final model, exported and installed for the
inference service; the newest wins if several queue up), and the watchdog, which pings
systemd only while the round engine's ticker is moving.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
import trio

from agent.config.schema import Source, VehicleConfig
from agent.learn.buffer import SampleBuffer
from agent.learn.intake import CameraFeed, FolderWatch, keep, open_feed, poll_folder
from agent.learn.publish import Published, publish
from agent.learn.reporting import Reporter
from agent.notify import Notifier
from agent.ota.checks import SMOKE_SAMPLES
from agent.ota.updater import Updater
from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from agent.p2p.node import NodeConfig
from agent.serve import installed
from agent.swarm.chainview import AsyncLedger
from agent.swarm.driver import RoundDone, Vehicle, assemble
from agent.swarm.driver import VehicleConfig as DriverConfig
from agent.swarm.learner import Contributed, Learner, SitOut
from agent.telemetry import Telemetry
from chain.ledger import Web3Ledger
from models.classes import CLASSES
from models.codec import CodecConfig
from models.errors import ExportError
from models.family import FAMILIES, ModelFamily
from models.layout import ModelLayout, flat_hash
from models.train import TrainConfig, use_bf16

log = logging.getLogger(__name__)

FOLDER_POLL_S = 1.0
JOIN_WAIT_S = 30.0  # READY without a peer after this long: a lone vehicle still learns
FACTORY_SEED = 0  # the model every vehicle ships with: initialised from this seed


def software_version() -> str:
    try:
        return version("swarmdrive")
    except PackageNotFoundError:
        return "unknown"


def factory_hash(family: ModelFamily) -> str:
    """The hash of the ``family`` model every vehicle ships with: the fleet contract's
    genesis, so a fleet's vehicles all learn one family."""
    torch.manual_seed(FACTORY_SEED)  # as Learner(seed=FACTORY_SEED) initialises its model
    state = family.new_model().state_dict()
    layout = ModelLayout.of(state)
    return flat_hash(layout, layout.flatten(state))


class BufferedLearner(Learner):
    """A learner that trains on the sample buffer as it is when each round starts."""

    def __init__(self, buffer: SampleBuffer, min_samples: int, cpu_share: float,
                 train_cfg: TrainConfig, codec: CodecConfig, total_steps: int,
                 sampler_seed: int, fleet_momentum: bool = False,
                 lookahead: float = 0.0) -> None:
        family = buffer.family
        super().__init__(family.empty(), train_cfg, codec, total_steps, seed=FACTORY_SEED,
                         family=family, fleet_momentum=fleet_momentum, lookahead=lookahead)
        self.g.manual_seed(sampler_seed)  # same factory model, own batches
        self.buffer, self.min_samples, self.cpu_share = buffer, min_samples, cpu_share
        self._version = -1

    def _refresh(self) -> None:
        if self.buffer.version != self._version:
            self._version = self.buffer.version
            self.set_data(self.buffer.load(held_out=False))

    def contribute(self, base: np.ndarray, base_hash: bytes, round_: int, local_steps: int,
                   author: bytes = bytes(20)) -> Contributed:
        self._refresh()
        if self.samples < self.min_samples:
            raise SitOut(f"{self.samples} samples buffered, {self.min_samples} needed")
        return super().contribute(base, base_hash, round_, local_steps, author)

    def train_ahead(self, round_: int, local_steps: int, stop: Callable[[], bool],
                    max_steps: int | None = None) -> int:
        self._refresh()
        if self.samples < self.min_samples:
            return 0
        return super().train_ahead(round_, local_steps, stop, max_steps)

    def _steps(self, steps: int) -> list[float]:
        t0 = time.monotonic()
        losses = super()._steps(steps)
        # The training budget: rest in proportion, so that training takes at most cpu_share
        # of the time (this thread is the learner's own; the round's other work goes on).
        time.sleep((time.monotonic() - t0) * (1 / self.cpu_share - 1))
        return losses


@dataclass
class Queued:
    model: np.ndarray
    model_hash: str
    version: int
    source: str


class LearnDaemon:
    """The learner of one vehicle, from its config; ``run`` until cancelled."""

    def __init__(self, cfg: VehicleConfig, notifier: Notifier, ledger: Web3Ledger, fleet: Fleet,
                 identity: Identity) -> None:
        self.cfg, self.notifier, self.identity = cfg, notifier, identity
        state = cfg.vehicle.state_dir
        b, t = cfg.buffer, cfg.training
        self.family = FAMILIES[t.model]
        self.buffer = SampleBuffer(state / "buffer", self.family, cfg.buffer_samples(),
                                   b.max_age_h * 3600, b.held_out)
        self.learner = BufferedLearner(
            self.buffer, t.min_samples, t.cpu_share,
            TrainConfig(steps=t.schedule_rounds * t.local_steps, batch_size=t.steps_batch(),
                        lr=t.peak_lr(), bf16=use_bf16(t.precision)),
            CodecConfig(t.codec_density, t.codec_bits), t.schedule_rounds * t.local_steps,
            sampler_seed=int(identity.address, 16) % 2**63, fleet_momentum=t.fleet_momentum,
            lookahead=t.lookahead)
        vcfg = DriverConfig(local_steps=t.local_steps, checkpoint=state / "learner.ckpt",
                            train_ahead=t.train_ahead, poll_s=cfg.chain.poll_s,
                            max_steps_ahead=round(t.rounds_ahead * t.local_steps),
                            rounds=None if t.last_round is None else t.last_round + 1)
        self.factory = self.learner.weights().copy()  # served again if every release is revoked
        self.vehicle, self.round = assemble(
            identity, fleet, AsyncLedger(ledger), self.learner,
            NodeConfig(listen=cfg.p2p.listen, bootstrap=tuple(cfg.p2p.bootstrap)), vcfg,
            self.factory, on_round=self._on_round)
        self.watches = [FolderWatch(s.name, Path(s.uri), len(CLASSES),
                                    state / f"intake-{s.name}.seen")
                        for s in cfg.sources if _is_folder(s)]
        self.feeds = [open_feed(s.name, s.uri, len(CLASSES), s.fps)
                      for s in cfg.sources if not _is_folder(s)]
        self.published: Published | None = None
        self.install_error: str | None = None  # the last install's failure, until one works
        self.last_peer_seen = time.time()
        self.telemetry = None if cfg.telemetry is None else Telemetry(
            cfg.telemetry, identity.address, {"peer_id": str(identity.peer_id),
                                              "software": software_version()})
        self.ota = None if cfg.ota.policy != "release" else Updater(
            # Its own lane to the chain: a round's transaction waiting for a block must not hold
            # up the freeze check, nor a release.
            cfg.ota, state, cfg.serve.socket, AsyncLedger(ledger), self.vehicle.node,
            self.family, self._recent_samples, self._serve_factory, self._report_ota)
        self.reporter = Reporter(self, self.telemetry)
        self.ready = trio.Event()
        self._queued: Queued | None = None
        self._install = trio.Event()

    # --- rounds and installs --------------------------------------------------------------------

    def _on_round(self, vehicle: Vehicle, done: RoundDone) -> None:
        self.round = done.round
        self.reporter.round_done(done, vehicle.timings.get(done.round))
        if self.cfg.ota.policy == "swarm":
            self._queue(Queued(vehicle.model.copy(), done.model_hash.hex(), done.round, "round"))
        self.notifier.status(self.status_line())

    def _queue(self, q: Queued) -> None:
        self._queued = q  # a newer final model replaces one not yet installed
        self._install.set()

    async def _installer(self) -> None:
        while True:
            await self._install.wait()
            self._install = trio.Event()
            q, self._queued = self._queued, None
            if q is None:
                continue
            held = await trio.to_thread.run_sync(self.buffer.load, True)
            job = functools.partial(publish, self.cfg.vehicle.state_dir, self.family,
                                    self.learner.layout, q.model, q.model_hash, q.version,
                                    q.source, held)
            try:
                done: Published = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                    job, abandon_on_cancel=True)
            except (ExportError, OSError) as e:
                log.error("install_failed model=%s round=%d error=%s", q.model_hash[:12],
                          q.version, e)
                self.install_error = f"round {q.version}: {e}"
                continue
            self.published, self.install_error = done, None
            log.info("installed model=%s round=%d parity=%.1e held_out_%s=%s",
                     q.model_hash[:12], q.version, done.parity, self.family.metric,
                     "-" if done.score is None else f"{done.score:.4f}")

    def _install_current_if_needed(self) -> None:
        """At start: serve our current model unless it is already what serve has (following
        the swarm), or unless anything is installed at all (following releases)."""
        v = self.vehicle
        have = installed.current(self.cfg.vehicle.state_dir)
        if have is None or (self.cfg.ota.policy == "swarm"
                            and have.model_hash != v.model_hash.hex()):
            source = "genesis" if self.round < 0 else "round"
            self._queue(Queued(v.model.copy(), v.model_hash.hex(), max(self.round, 0), source))

    # --- OTA -----------------------------------------------------------------------------------

    def _recent_samples(self) -> np.ndarray:
        """Up to SMOKE_SAMPLES of the vehicle's newest crops or frames (held-out ones first);
        seeded noise before it has any."""
        for held_out in (True, False):
            images = self.buffer.load(held_out).images
            if len(images):
                return images[-SMOKE_SAMPLES:]
        return np.random.default_rng(0).integers(
            0, 256, (SMOKE_SAMPLES, *self.family.image_shape, 3), np.uint8)

    def _serve_factory(self) -> None:
        factory = self.factory
        layout = self.learner.layout
        self._queue(Queued(factory.copy(), flat_hash(layout, factory), 0, "genesis"))

    def _report_ota(self, body: dict[str, object]) -> None:
        log.info("ota %s", " ".join(f"{k}={v}" for k, v in body.items()))
        if self.telemetry is not None:
            self.telemetry.publish("ota", body)

    # --- intake ---------------------------------------------------------------------------------

    async def _watch_folder(self, watch: FolderWatch) -> None:
        while True:
            added = await trio.to_thread.run_sync(poll_folder, watch, self.buffer)
            if added:
                log.info("intake source=%s samples=%d buffered=%d", watch.name, added,
                         self.buffer.samples)
            await trio.sleep(FOLDER_POLL_S)

    async def _read_camera(self, feed: CameraFeed) -> None:
        while True:
            frame = await trio.to_thread.run_sync(feed.next)
            if frame is None:
                log.warning("camera_ended source=%s frames=%d", feed.name, feed.stats["frames"])
                return
            await trio.to_thread.run_sync(keep, self.buffer, frame, f"{feed.name}/{frame.origin}")
            await trio.sleep(feed.interval_s)

    # --- health ---------------------------------------------------------------------------------

    def peers(self) -> int:
        n = len(self.vehicle.node.connected())
        if n:
            self.last_peer_seen = time.time()
        return n

    def status_line(self) -> str:
        train, held = self.buffer.counts()
        served = self.published.entry.version if self.published else "-"
        return (f"round {self.round}, model {self.vehicle.model_hash.hex()[:12]}; "
                f"{train + held} samples buffered ({held} held out); {self.peers()} peers; "
                f"serving round {served}")

    async def _until_joined(self) -> None:
        await self.vehicle.joined.wait()
        with trio.move_on_after(JOIN_WAIT_S if self.cfg.p2p.bootstrap else 0):
            while self.peers() == 0:
                await trio.sleep(0.05)

    async def _watchdog(self) -> None:
        every = self.notifier.watchdog_s or 10.0
        seen = -1
        while True:
            if self.vehicle.ticks != seen:  # the round engine is being driven
                seen = self.vehicle.ticks
                self.notifier.watchdog(self.status_line())
            await trio.sleep(every)

    def reload(self, cfg: VehicleConfig) -> None:
        """SIGHUP: what can change without a restart: the buffer's limits and the log level."""
        self.notifier.reloading()
        b = cfg.buffer
        self.buffer.max_samples, self.buffer.max_age_s = cfg.buffer_samples(), b.max_age_h * 3600
        dropped = self.buffer.evict()
        logging.getLogger().setLevel(cfg.log_level.upper())
        log.info("reloaded max_samples=%d max_age_h=%s dropped=%d", self.buffer.max_samples,
                 b.max_age_h, dropped)
        self.notifier.ready(self.status_line())

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Learn and take part in rounds until cancelled."""
        self._install_current_if_needed()
        if self.telemetry is not None:
            self.telemetry.start()
        try:
            await self._run()
        finally:
            if self.telemetry is not None:  # say goodbye, even while being cancelled
                with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                    await trio.to_thread.run_sync(  # type: ignore[call-arg]
                        self.telemetry.stop, abandon_on_cancel=True)

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.vehicle.run)
            nursery.start_soon(self._installer)
            if self.ota is not None:
                nursery.start_soon(self.ota.run)
            for w in self.watches:
                nursery.start_soon(self._watch_folder, w)
            for f in self.feeds:
                nursery.start_soon(self._read_camera, f)
            await self._until_joined()
            log.info("learner_ready address=%s peers=%d samples=%d bf16=%s",
                     self.identity.address, self.peers(), self.buffer.samples,
                     self.learner.train_cfg.bf16)
            self.notifier.ready(self.status_line())
            self.ready.set()
            nursery.start_soon(self._watchdog)
            interval = self.cfg.telemetry.interval_s if self.cfg.telemetry else 30.0
            nursery.start_soon(self.reporter.run, interval)


def _is_folder(source: Source) -> bool:
    """A source URI without a scheme is an image folder (``agent.camera.source``)."""
    scheme, sep, _ = source.uri.partition(":")
    return not (sep and scheme.isidentifier() and len(scheme) > 1) and "://" not in source.uri

