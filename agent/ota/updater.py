"""The vehicle's OTA task: follow the chain's releases and carry each one through fetch, verify,
smoke test, A/B install, switch and health window, rolling back on its own
(docs/spec/ota-v1.md). It runs inside the learner; the inference service only ever sees a new
pointer.

Every step is logged and reported over telemetry (``…/ota``); problems become alarms that the
learner's reporter publishes. Nothing here ends the vehicle: a failing chain, source or model
is an event, and the next poll tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trio

from agent.config.schema import Ota
from agent.ota.checks import ReleaseRejected, load_checked, smoke_test
from agent.ota.policy import Plan, Serving, plan
from agent.ota.sources import SourceError, from_mirror, from_peers
from agent.p2p.node import Node
from agent.p2p.store import Kind
from agent.serve import installed
from agent.serve.client import ServeClient, ServeError
from agent.serve.server import STATS_FILE, STATS_S
from agent.swarm.chainview import AsyncLedger
from chain.ledger import Release
from models.atomic import atomic_write_bytes
from models.classes import CLASSES
from models.family import ModelFamily

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
SWITCH_WAIT_S = 30.0  # the inference service looks at the pointer every 0.2 s
ALARMS = ("ota_failed", "ota_rolled_back", "ota_rollback_refused", "chain_frozen",
          "model_file_tampered")


@dataclass
class OtaState:
    """What survives a restart: releases that failed here, and one whose health window is
    still open (after a crash it is watched again from the start)."""
    failed: dict[int, str] = field(default_factory=dict)
    pending: int | None = None

    @classmethod
    def load(cls, path: Path) -> OtaState:
        try:
            d = json.loads(path.read_bytes())
            return cls({int(k): str(v) for k, v in d.get("failed", {}).items()},
                       None if d.get("pending") is None else int(d["pending"]))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("ota_state_unreadable path=%s error=%s (starting afresh)", path, e)
            return cls()

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps({"failed": self.failed, "pending": self.pending},
                                            indent=1).encode(), mode=0o640)


class Updater:
    def __init__(self, cfg: Ota, state_dir: Path, socket: Path, chain: AsyncLedger, node: Node,
                 family: ModelFamily, samples: Callable[[], np.ndarray],
                 fallback: Callable[[], None],
                 report: Callable[[dict[str, object]], None]) -> None:
        """``family``: what this vehicle learns, which a release must be; ``samples``: its
        recent crops or frames (for the smoke test); ``fallback``: serve the vehicle's own
        model again (no good release left); ``report``: one telemetry message."""
        self.cfg, self.state_dir, self.socket = cfg, state_dir, socket
        self.chain, self.node, self.family, self.samples = chain, node, family, samples
        self.fallback, self.report = fallback, report
        self.dir = state_dir / "ota"
        self.state = OtaState.load(self.dir / STATE_FILE)
        self.alarms: dict[str, str] = {}  # name -> detail, while raised
        self.target: int | None = None
        self.stats = {"installed": 0, "rolled_back": 0, "failed": 0, "source_errors": 0}
        self._audited = 0.0
        self._pinned: bytes | None = None

    # --- what is served -------------------------------------------------------------------------

    def serving(self) -> Serving | None:
        p = installed.pointer(self.state_dir)
        if p is None or p.active.source != "release":
            return None
        return Serving(p.active.version, p.active.sha256)

    def status(self) -> dict[str, object]:
        s = self.serving()
        return {"serving": s.version if s else None, "target": self.target,
                "failed": sorted(self.state.failed)}

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll the chain every ``poll_s`` and act, until cancelled."""
        self._pin_serving()
        while True:
            try:
                await self.step()
            except (OSError, installed.PointerError) as e:
                log.error("ota_step_failed error=%s", e)
            except Exception as e:  # any web3 or node failure: the next poll tries again
                log.warning("ota_poll_failed error=%s: %s", type(e).__name__, e)
            await trio.sleep(self.cfg.poll_s)

    async def step(self) -> None:
        ledger = self.chain.ledger
        self._check_freeze(float(await self.chain.run(ledger.latest_block_time)))
        if time.monotonic() - self._audited >= self.cfg.audit_s:
            self._audited = time.monotonic()
            await trio.to_thread.run_sync(self.audit)
        count = (await self.chain.run(ledger.status)).release_count
        releases = [await self.chain.run(ledger.release, v) for v in range(1, count + 1)]
        serving = self.serving()
        if self.state.pending is not None and serving is not None \
                and serving.version == self.state.pending:
            await self._settle(releases[serving.version - 1] if serving.version <= count
                               else None)
            return
        decision = plan(releases, serving, self.state.failed)
        self._set_alarm("ota_rollback_refused",
                        decision.reason if decision.action == "refuse" else None)
        await self._act(decision, serving)

    async def _act(self, p: Plan, serving: Serving | None) -> None:
        self.target = serving.version if serving else None
        if p.action == "refuse":
            log.warning("ota_refused reason=%s", p.reason)
        elif p.action == "fallback":
            log.warning("ota_fallback reason=%s", p.reason)
            self._say(serving.version if serving else 0, "revoked", detail=p.reason)
            self.target = None
            self.fallback()
        elif p.action == "install" and p.release is not None:
            self.target = p.release.version
            log.info("ota_target version=%d reason=%s", p.release.version, p.reason)
            await self.install(p.release)

    # --- one release ----------------------------------------------------------------------------

    async def install(self, release: Release) -> None:
        """Fetch, verify, smoke-test and install ``release``, then watch it."""
        v = release.version
        data = await self.fetch(release)
        if data is None:
            return
        try:
            model_hash = await self.chain.run(self.chain.ledger.round_model, release.source_round)
            net = await trio.to_thread.run_sync(
                load_checked, release, data, self.dir / "candidate.onnx", model_hash,
                tuple(CLASSES), self.family.task, self.family.image_shape)
            self._say(v, "verified")
            samples = await trio.to_thread.run_sync(self.samples)
            summary = await trio.to_thread.run_sync(smoke_test, release, net, samples,
                                                    self.cfg.latency_budget_ms)
            self._say(v, "smoke_passed", detail=summary)
        except ReleaseRejected as e:
            self._fail(release, e.step, str(e))
            return
        finally:
            (self.dir / "candidate.onnx").unlink(missing_ok=True)
        entry = await trio.to_thread.run_sync(installed.write_model, self.state_dir, data,
                                              net.info.model_hash, v, "release")
        before = installed.pointer(self.state_dir)
        self.state.pending = v
        self.state.save(self.dir / STATE_FILE)
        installed.point(self.state_dir, entry, before.active if before else None)
        self._pin(data, release)
        self._say(v, "installed")
        log.info("ota_installed version=%d sha256=%s", v, entry.sha256[:12])
        await self._settle(release)

    async def fetch(self, release: Release) -> bytes | None:
        """The release's bytes from peers, then the mirror; None (alarm raised) if no source
        gave the right bytes."""
        local = self._held(release)
        if local is not None:
            self._say(release.version, "fetched", source="local", bytes=len(local))
            return local
        errors = []
        for source in ("peer", "mirror"):
            if source == "mirror" and not release.uri:
                continue
            try:
                data = await (from_peers(self.node, release, self.cfg.fetch_timeout_s)
                              if source == "peer" else
                              from_mirror(release, self.dir, self.cfg.fetch_timeout_s))
            except SourceError as e:
                self.stats["source_errors"] += 1
                errors.append(str(e))
                log.warning("ota_source_failed version=%d error=%s", release.version, e)
                continue
            self._say(release.version, "fetched", source=source, bytes=len(data))
            return data
        detail = f"release {release.version}: no source gave its bytes ({'; '.join(errors)})"
        self._set_alarm("ota_failed", detail)
        return None

    def _held(self, release: Release) -> bytes | None:
        """The release's bytes if this vehicle already has them: in its store, or as the
        standby file (going back to a release after a revocation)."""
        data = self.node.store.get(Kind.RELEASE, release.onnx_sha256)
        p = installed.pointer(self.state_dir)
        if data is None and p is not None and p.standby is not None \
                and p.standby.sha256 == release.onnx_sha256.hex():
            try:
                data = installed.model_path(self.state_dir, p.standby).read_bytes()
            except OSError:
                return None
        if data is None or hashlib.sha256(data).digest() != release.onnx_sha256:
            return None
        return data

    async def _settle(self, release: Release | None) -> None:
        """Wait for the switch, watch the health window, then keep or roll back."""
        p = installed.pointer(self.state_dir)
        if p is None or release is None:
            self.state.pending = None
            self.state.save(self.dir / STATE_FILE)
            return
        v, entry = release.version, p.active
        if not await self._switched(entry.sha256):
            log.warning("ota_switch_pending version=%d (the inference service has not "
                        "switched yet)", v)
            return  # the next poll looks again
        self._say(v, "switched")
        base = _health(self._serve_stats(), entry.sha256)
        t0 = time.time()
        await trio.sleep(self.cfg.health_window_s)
        now = await self._stats_after(t0 + self.cfg.health_window_s)
        problem = _judge(base, _health(now, entry.sha256), self.cfg.latency_budget_ms)
        self.state.pending = None
        if problem is None:
            self.state.save(self.dir / STATE_FILE)
            self.stats["installed"] += 1
            self._set_alarm("ota_failed", None)
            self._say(v, "healthy", detail=_describe(_health(now, entry.sha256)))
            log.info("ota_healthy version=%d", v)
            return
        if p.standby is not None:
            installed.point(self.state_dir, p.standby, None)
        self.stats["rolled_back"] += 1
        self._set_alarm("ota_rolled_back", f"release {v}: {problem}")
        self._fail(release, "health", f"release {v}: {problem}")
        self._say(v, "rolled_back", detail=problem)

    async def _switched(self, sha256: str) -> bool:
        def ask() -> str | None:
            try:
                with ServeClient(self.socket, timeout_s=5.0) as c:
                    return str(c.info()["model"]["sha256"])
            except (OSError, ServeError, KeyError, TypeError):
                return None

        with trio.move_on_after(SWITCH_WAIT_S):
            while await trio.to_thread.run_sync(ask) != sha256:
                await trio.sleep(0.2)
            return True
        return False

    async def _stats_after(self, ts: float) -> dict[str, object]:
        """The service's statistics as written at or after ``ts`` (it writes every
        STATS_S); the newest there is if none comes."""
        with trio.move_on_after(3 * STATS_S):
            while True:
                stats = self._serve_stats()
                if float(stats.get("ts", 0) or 0) >= ts:  # type: ignore[arg-type]
                    return stats
                await trio.sleep(0.5)
        return self._serve_stats()

    def _serve_stats(self) -> dict[str, object]:
        try:
            stats: dict[str, object] = json.loads(
                (installed.serve_dir(self.state_dir) / STATS_FILE).read_bytes())
            return stats
        except (OSError, ValueError):
            return {}

    # --- guards ---------------------------------------------------------------------------------

    def _check_freeze(self, newest_block: float) -> None:
        # The detail names the block's time, not its age: it stays the same while the chain
        # stays frozen, so the alarm is published once.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest_block))
        self._set_alarm("chain_frozen", f"no new block since {stamp}, more than "
                        f"{self.cfg.max_chain_age_s:g} s ago"
                        if time.time() - newest_block > self.cfg.max_chain_age_s else None)

    def audit(self) -> None:
        """Hash the active and standby files again; repair or drop one that changed."""
        p = installed.pointer(self.state_dir)
        if p is None:
            return
        bad = []
        for role, entry in (("active", p.active), ("standby", p.standby)):
            if entry is None:
                continue
            path = installed.model_path(self.state_dir, entry)
            if installed.file_sha256(path) == entry.sha256:
                continue
            bad.append(f"{role} {entry.file[:12]}")
            log.error("model_file_tampered role=%s file=%s", role, path)
            held = self.node.store.get(Kind.RELEASE, bytes.fromhex(entry.sha256))
            if held is not None:
                atomic_write_bytes(path, held, mode=0o640)  # the same name: no switch
            elif role == "standby":
                installed.point(self.state_dir, p.active, None)
        self._set_alarm("model_file_tampered",
                        f"installed model files changed on disk: {', '.join(bad)}" if bad
                        else None)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _fail(self, release: Release, step: str, reason: str) -> None:
        self.state.failed[release.version] = f"{step}: {reason}"
        self.state.save(self.dir / STATE_FILE)
        self.stats["failed"] += 1
        log.error("ota_failed version=%d step=%s reason=%s", release.version, step, reason)
        self._set_alarm("ota_failed", reason)
        self._say(release.version, "failed", failed_step=step, detail=reason)

    def _pin(self, data: bytes, release: Release) -> None:
        """Keep the served release in the content store: every vehicle running it serves it."""
        if self._pinned is not None:
            self.node.store.unpin(Kind.RELEASE, self._pinned)
        self._pinned = self.node.store.put(Kind.RELEASE, data, key=release.onnx_sha256,
                                           pin=True)

    def _pin_serving(self) -> None:
        p = installed.pointer(self.state_dir)
        if p is None or p.active.source != "release":
            return
        path = installed.model_path(self.state_dir, p.active)
        try:
            data = path.read_bytes()
        except OSError:
            return
        if installed.file_sha256(path) == p.active.sha256:
            self._pinned = self.node.store.put(Kind.RELEASE, data,
                                               key=bytes.fromhex(p.active.sha256), pin=True)

    def _set_alarm(self, name: str, detail: str | None) -> None:
        if detail is None:
            self.alarms.pop(name, None)
        else:
            self.alarms[name] = detail

    def _say(self, version: int, step: str, **extra: object) -> None:
        self.report({"version": version, "step": step, **extra})


def _health(stats: dict[str, object], sha256: str) -> dict[str, float]:
    models = stats.get("models")
    h = models.get(sha256) if isinstance(models, dict) else None
    if not isinstance(h, dict):
        return {"requests": 0, "errors": 0, "nonfinite": 0, "p99_ms": 0.0}
    return {k: float(h.get(k) or 0) for k in ("requests", "errors", "nonfinite", "p99_ms")}


def _judge(base: dict[str, float], now: dict[str, float], budget_ms: float) -> str | None:
    """Why the window failed, or None. Counters that went down mean the service restarted:
    then the figures since its start are the window's."""
    d = {k: now[k] - base[k] if now["requests"] >= base["requests"] else now[k]
         for k in ("requests", "errors", "nonfinite")}
    if d["errors"]:
        return f"{d['errors']:.0f} of {d['requests']:.0f} inferences failed"
    if d["nonfinite"]:
        return f"{d['nonfinite']:.0f} of {d['requests']:.0f} outputs were not finite"
    if d["requests"] and now["p99_ms"] > budget_ms:
        return f"p99 latency {now['p99_ms']:.1f} ms is over the {budget_ms:g} ms budget"
    return None


def _describe(h: dict[str, float]) -> str:
    return f"{h['requests']:.0f} requests, p99 {h['p99_ms']:.2f} ms"
