"""What the learner reports: its status, its alarms and its rounds, over telemetry
(docs/spec/telemetry-v1.md)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from agent.ota.updater import ALARMS as OTA_ALARMS
from agent.resources import cpu_s, rss_mb
from agent.serve import installed
from agent.serve.server import STATS_FILE, STATS_S
from agent.swarm.driver import RoundDone, RoundTiming
from agent.telemetry import Telemetry

if TYPE_CHECKING:
    from agent.learn.daemon import LearnDaemon

log = logging.getLogger(__name__)

SERVE_STALE_S = 6 * STATS_S  # the inference service wrote no stats for this long: an alarm
LONELY_S = 120.0  # no peer for this long, with peers to dial: an alarm


@dataclass(frozen=True)
class Alarm:
    name: str
    check: Callable[[LearnDaemon, float], str | None]  # the detail while it is raised


def _serve_stats(d: LearnDaemon) -> dict[str, object] | None:
    try:
        stats: dict[str, object] = json.loads(
            (installed.serve_dir(d.cfg.vehicle.state_dir) / STATS_FILE).read_bytes())
        return stats
    except (OSError, ValueError):
        return None


def _serve_down(d: LearnDaemon, now: float) -> str | None:
    stats = _serve_stats(d)
    ts = stats.get("ts") if stats else None
    if not isinstance(ts, (int, float)) or now - ts > SERVE_STALE_S:
        return "the inference service reports nothing"
    return None


def _lonely(d: LearnDaemon, now: float) -> str | None:
    if d.cfg.p2p.bootstrap and d.peers() == 0 and now - d.last_peer_seen > LONELY_S:
        return f"no peer connected for {now - d.last_peer_seen:.0f} s"
    return None


def _install_failed(d: LearnDaemon, now: float) -> str | None:
    return d.install_error


def _verify_mismatch(d: LearnDaemon, now: float) -> str | None:
    engine = d.vehicle.engine
    n = engine.stats["verify_mismatch"] if engine is not None else 0
    return f"{n} commitments did not match our own merge" if n else None


def _ota(name: str) -> Alarm:
    return Alarm(name, lambda d, now: d.ota.alarms.get(name) if d.ota is not None else None)


ALARMS = (Alarm("serve_down", _serve_down), Alarm("no_peers", _lonely),
          Alarm("install_failed", _install_failed), Alarm("verify_mismatch", _verify_mismatch),
          *(_ota(name) for name in OTA_ALARMS))


# Node counters whose growth since the previous round each round message carries.
ROUND_NODE_STATS = ("bytes_sent", "bytes_received", "fetched", "fetch_asked",
                    "fetch_slot_wait_ms", "fetch_wire_ms", "fetch_deadline")


class Reporter:
    def __init__(self, daemon: LearnDaemon, telemetry: Telemetry | None) -> None:
        self.daemon, self.telemetry = daemon, telemetry
        self.raised: dict[str, str] = {}
        self._at_last_round = self._counters()  # what round messages count since the last

    def _counters(self) -> dict[str, float]:
        """The totals a round message reports the growth of."""
        stats = self.daemon.vehicle.node.stats
        return {**{k: stats[k] for k in ROUND_NODE_STATS},
                "cpu_s": cpu_s(), "train_cpu_s": self.daemon.vehicle.train_cpu_s,
                # The event loop's thread (this one): libp2p, gossip, the round engine.
                "loop_cpu_s": time.thread_time()}

    def status(self) -> dict[str, object]:
        d = self.daemon
        train, held = d.buffer.counts()
        pub = d.published
        serve = _serve_stats(d) or {}
        try:
            active = installed.current(d.cfg.vehicle.state_dir)
        except installed.PointerError:
            active = None
        return {
            "round": d.round,
            "model": d.vehicle.model_hash.hex(),
            "serving": ({"hash": active.model_hash, "version": active.version,
                         "source": active.source, "sha256": active.sha256} if active else None),
            **{metric: (pub.score if pub and active and pub.entry == active
                        and d.family.metric == metric else None)
               for metric in ("accuracy", "map50")},
            "ota": d.ota.status() if d.ota is not None else None,
            "samples": {"train": train, "held_out": held},
            "peers": d.peers(),
            "cpu_s": round(cpu_s(), 2), "rss_mb": round(rss_mb(), 1),
            "inference": {k: serve.get(k) for k in ("p50_ms", "p99_ms", "requests",
                                                      "refused", "rss_mb")},
            "alarms": sorted(self.raised),
            "telemetry_dropped": self.telemetry.dropped if self.telemetry else 0,
        }

    def round_done(self, done: RoundDone, timing: RoundTiming | None) -> None:
        now, before = self._counters(), self._at_last_round
        self._at_last_round = now
        grown = {k: round(now[k] - before[k], 3) for k in now}
        if self.telemetry is not None:
            seconds = {} if timing is None else {
                k: round(getattr(timing, k), 4)
                for k in ("train_s", "exchange_s", "merge_s", "commit_s", "round_s")}
            self.telemetry.publish("round", {
                "round": done.round, "model": done.model_hash.hex(),
                "committer": done.committer, "contributions": done.contributions,
                "signers": done.signers, "verified": done.verified, **seconds, **grown,
                "trainer_busy_s": round(self.daemon.vehicle.busy_s, 3)})

    def check_alarms(self, now: float) -> None:
        for alarm in ALARMS:
            detail = alarm.check(self.daemon, now)
            if detail is not None and self.raised.get(alarm.name) not in (None, detail):
                self.raised.pop(alarm.name)  # raised again, for another reason: say so
            if (detail is not None) == (alarm.name in self.raised):
                continue
            if detail is not None:
                self.raised[alarm.name] = detail
                log.warning("alarm_raised alarm=%s detail=%s", alarm.name, detail)
            else:
                detail = self.raised.pop(alarm.name)
                log.info("alarm_cleared alarm=%s", alarm.name)
            if self.telemetry is not None:
                self.telemetry.publish("alarm", {"alarm": alarm.name, "active": alarm.name in
                                                 self.raised, "detail": detail})

    async def run(self, interval_s: float) -> None:
        while True:
            self.check_alarms(time.time())
            if self.telemetry is not None:
                self.telemetry.publish("status", self.status(), retain=True)
            await trio.sleep(interval_s)
