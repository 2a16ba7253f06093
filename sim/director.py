"""Runs a scenario (``sim.scenario``) on a fleet of real processes and records what happened.

The director starts anvil (with the scenario's block time), mosquitto and every vehicle's
``serve`` and ``learn``; then, polling about twice a second, it fires each event once the chain
has its round, brings stopped services back, and watches for each event's recovery:
- kill: the fleet finalises a round without the vehicle;
- byzantine: the fleet finalises a round while the vehicle lies (its harm shows in the
  accuracy plot);
- restart and register: the vehicle reports a final round of its own on MQTT;
- broker_down: every running vehicle's telemetry arrives again after the broker is back;
- rpc_down: the chain finalises a round after the node is back;
- publish and revoke: every running vehicle serves what the operator's releases now name (the
  newest release not revoked, or the factory model).
It evaluates the model each vehicle serves (its installed ONNX, run by ONNX Runtime) on the
fleet-wide test set whenever that model changes. A process that dies without the scenario
killing it ends the run (``FleetError``); what was recorded up to then is kept.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.serve import installed
from chain.launch import Anvil
from chain.ledger import RoundFinal, Web3Ledger
from models.classes import CLASSES
from models.data import CropSet
from models.evaluate import report
from models.runtime import OnnxClassifier
from sim.mirror import FileMirror
from sim.mosquitto import Mosquitto
from sim.procfleet import FleetError, ProcessFleet
from sim.profiles import fleet_profiles
from sim.scenario import Event, Scenario
from sim.telemetry_watch import TelemetryWatch

POLL_S = 0.5
TIMEOUT_S_PER_ROUND = 300.0  # the run gives up when a round takes longer than this
# After the last round, how long recoveries are still watched and events that waited (a
# release rolling out, a revoke waiting for it) still fire.
RECOVERY_GRACE_S = 180.0
FINISH_S = 120.0  # then how long every running vehicle has to serve the last round's model
RELEASE_CLI_S = 180.0  # one 'swarmdrive release' command, on a machine the fleet keeps busy
# Vehicles that follow releases: look often, and judge a switch with a budget a loaded 2-core
# machine meets (the daemon's defaults suit a vehicle's own cores).
RELEASE_OTA = ('policy = "release"\npoll_s = 1.0\nhealth_window_s = 6.0\n'
               "latency_budget_ms = 250.0\naudit_s = 5.0\nfetch_timeout_s = 30.0")


@dataclass
class Happening:
    """An event as it happened, and when the fleet had recovered from it."""
    t: float  # seconds since the fleet started
    round: int  # final rounds at the time
    what: str
    recovered_t: float | None = None
    recovery: str = ""  # what counted as recovery

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_t is None else self.recovered_t - self.t


@dataclass
class Record:
    """Everything a run shows; ``sim.report`` draws it and ``result.json`` holds it."""
    scenario: str
    vehicles: list[dict[str, Any]] = field(default_factory=list)  # index, address, profile
    rounds: list[dict[str, Any]] = field(default_factory=list)  # round, model_hash, t, ...
    accuracy: list[dict[str, Any]] = field(default_factory=list)  # vehicle, round, t, acc
    round_reports: list[dict[str, Any]] = field(default_factory=list)  # telemetry "round"
    alarms: list[dict[str, Any]] = field(default_factory=list)  # telemetry "alarm"
    memory: dict[str, dict[str, float | None]] = field(default_factory=dict)  # latest RSS
    events: list[Happening] = field(default_factory=list)
    baselines: dict[str, Any] | None = None
    # The chain's last model, what every running vehicle should serve (that model, or the
    # release the operator's releases name) and who does.
    final: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failure: str | None = None  # why the run ended early

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for e, h in zip(d["events"], self.events, strict=True):
            e["recovery_s"] = h.recovery_s
        return d


@dataclass
class Operator:
    """A ``swarmdrive release`` command the director started for an event."""
    proc: subprocess.Popen[str]
    happening: Happening
    revoked: int | None = None  # the version, for a revoke
    started: float = field(default_factory=time.monotonic)


class Director:
    def __init__(self, scenario: Scenario, root: Path, test: CropSet,
                 progress: Callable[[str], None] = lambda line: None) -> None:
        self.sc, self.root, self.test, self.progress = scenario, root, test, progress
        self.record = Record(scenario.name)
        self.t0 = time.monotonic()
        self.finals: list[RoundFinal] = []
        self._block = 0
        self._scores: dict[str, float] = {}  # ONNX sha256 -> accuracy on the test set
        self._seen: dict[int, str] = {}  # vehicle -> sha256 of the model it serves
        self._down: dict[str, float] = {}  # service -> when it comes back
        self._killed: set[int] = set()
        self._watching: list[tuple[Happening, Callable[[], bool]]] = []
        self._back_at: dict[str, int] = {}  # service -> log length (broker), finals (rpc)
        self._releases: dict[int, str] = {}  # version -> sha256 of its file (hex)
        self._revoked: set[int] = set()
        self._rolled_out: set[int] = set()  # releases every running vehicle has served
        self._operator: Operator | None = None  # the release command in progress

    # --- running ------------------------------------------------------------------------------

    def run(self) -> Record:
        """Run the scenario to its last round; the record, also when it failed."""
        sc = self.sc
        self.root.mkdir(parents=True, exist_ok=True)
        anvil = Anvil(self.root / "anvil.json", block_time_s=sc.chain.block_time_s)
        broker = Mosquitto(self.root / "mosquitto")
        self.anvil, self.broker = anvil, broker
        try:
            with anvil, broker, TelemetryWatch("127.0.0.1", broker.port) as watch, \
                    FileMirror(self.root / "releases") as mirror:
                self.watch, self.mirror = watch, mirror
                self.fleet = ProcessFleet.create(
                    self.root, anvil.url, sc.fleet.vehicles, sc.params, sc.fleet.seed,
                    training=self._training(), telemetry=self._telemetry(broker.port),
                    ota=RELEASE_OTA if sc.fleet.ota == "release" else 'policy = "swarm"')
                self.ledger = Web3Ledger(anvil.web3(), self.fleet.contract, None, retries=1)
                try:
                    for v in self.fleet.vehicles:
                        self._start(v.index)
                    self._loop()
                    self._finish()
                finally:
                    self.fleet.stop_all()
                    self._collect_telemetry()
        except FleetError as e:
            self.record.failure = str(e)
        finally:
            self.record.seconds = round(self._now(), 1)
        return self.record

    def _training(self) -> str:
        f = self.sc.fleet
        return (f"local_steps = {f.local_steps}\nbatch_size = {f.batch_size}\nlr = {f.lr}\n"
                f"schedule_rounds = {f.rounds}\nmin_samples = 32\ncpu_share = {f.cpu_share}\n"
                f"last_round = {f.rounds - 1}\ntrain_ahead = {str(f.train_ahead).lower()}")

    @staticmethod
    def _telemetry(port: int) -> str:
        return f'host = "127.0.0.1"\nport = {port}\ntls = false\ninterval_s = 2.0'

    def _start(self, i: int) -> None:
        self.fleet.start("serve", i)
        self.fleet.start("learn", i)

    def _loop(self) -> None:
        pending = self.sc.ordered_events()
        rounds = self.sc.fleet.rounds
        deadline = time.monotonic() + TIMEOUT_S_PER_ROUND
        grace_end = float("inf")  # recoveries still watched after the last round
        while len(self.finals) < rounds or self._down or self._operator is not None or (
                (self._watching or pending) and time.monotonic() < grace_end):
            if len(self.finals) >= rounds:
                grace_end = min(grace_end, time.monotonic() + RECOVERY_GRACE_S)
            self.fleet.check_alive()
            before = len(self.finals)
            self._poll_chain()
            if len(self.finals) > before:
                deadline = time.monotonic() + TIMEOUT_S_PER_ROUND
                self.progress(f"round {len(self.finals)}/{rounds} final")
            if time.monotonic() > deadline:
                raise FleetError(f"no round final for {TIMEOUT_S_PER_ROUND:.0f} s after "
                                 f"round {len(self.finals)}")
            while pending and pending[0].at_round <= len(self.finals) \
                    and self._ready(pending[0]):
                self._fire(pending.pop(0))
            self._check_operator()
            self._bring_back()
            self._score_served()
            self._check_recoveries()
            time.sleep(POLL_S)

    def _finish(self) -> None:
        """Wait until every running vehicle serves what it should: the last round's model, or
        the release the operator's releases name; note who does."""
        last = self.finals[self.sc.fleet.rounds - 1]
        deadline = time.monotonic() + FINISH_S
        serving: dict[int, str | None] = {}
        while time.monotonic() < deadline:
            self.fleet.check_alive()
            self._score_served()
            serving = self._serving()
            if all(h == self._expected() for h in serving.values()):
                break
            time.sleep(POLL_S)
        want = self._expected()
        self.record.final = {
            "round": last.round, "chain_model_hash": last.model_hash.hex(),
            "expected": self._expected_words(), "expected_id": want,
            "serving": {str(i): h for i, h in serving.items()},
            "all_serve_expected": all(h == want for h in serving.values())}

    def _serving(self) -> dict[int, str | None]:
        """Per running vehicle, what it serves: the model's hash (following the swarm) or the
        file's sha256, "genesis" for the factory model (following releases)."""
        return {v.index: _serving_id(v.state, self.sc.fleet.ota) for v in self.fleet.vehicles
                if v.index not in self._killed}

    def _expected(self) -> str:
        if self.sc.fleet.ota == "swarm":  # the last round's, once the run has it
            last = self.finals[:self.sc.fleet.rounds]
            return last[-1].model_hash.hex() if last else ""
        good = self._newest_good_release()
        return "genesis" if good is None else self._releases[good]

    def _expected_words(self) -> str:
        if self.sc.fleet.ota == "swarm":
            return "the last final round's model"
        good = self._newest_good_release()
        return "the factory model (no release left)" if good is None else f"release {good}"

    def _newest_good_release(self) -> int | None:
        return max((v for v in self._releases if v not in self._revoked), default=None)

    def _now(self) -> float:
        return time.monotonic() - self.t0

    # --- events -------------------------------------------------------------------------------

    def _fire(self, e: Event) -> None:
        words = _describe(e)
        h = Happening(round(self._now(), 2), len(self.finals), words)
        self.record.events.append(h)
        self.progress(f"event: {words}")
        if e.action == "kill":
            assert e.vehicle is not None
            self.fleet.kill(e.vehicle)
            self._killed.add(e.vehicle)
            self._watch(h, "the fleet finalised a round without it", self._a_round_from_now())
        elif e.action == "restart":
            assert e.vehicle is not None
            self._killed.discard(e.vehicle)
            self._start(e.vehicle)
            self._watch(h, "it reported a final round again", self._reported_round(e.vehicle))
        elif e.action == "byzantine":
            assert e.vehicle is not None
            self.fleet.stop("learn", e.vehicle)
            self.fleet.start("learn", e.vehicle, command=("byzantine", "--attack", e.attack))
            self._watch(h, "the fleet finalised a round with it lying", self._a_round_from_now())
        elif e.action == "register":
            v = self.fleet.add_vehicle()
            self._start(v.index)
            self._watch(h, "it reported a final round", self._reported_round(v.index))
        elif e.action == "broker_down":
            assert e.seconds is not None
            self.broker.stop()
            self._down["broker"] = time.monotonic() + e.seconds
            self._watch(h, "every running vehicle's telemetry arrived again",
                        self._telemetry_back())
        elif e.action == "rpc_down":
            assert e.seconds is not None
            self.anvil.stop()
            self._down["rpc"] = time.monotonic() + e.seconds
            self._watch(h, "the chain finalised a round after the node came back",
                        self._final_after_rpc())
        elif e.action == "publish":
            self._publish(h)
        elif e.action == "revoke":
            assert e.version is not None
            self._operator = Operator(self._release_cli("revoke", str(e.version)), h,
                                      e.version)

    def _ready(self, e: Event) -> bool:
        """Whether ``e`` can fire now. The operator runs one command at a time. A publish needs
        a vehicle that has checkpointed a final round (the chain can be a poll ahead of every
        vehicle); a revoke withdraws a release that has reached every running vehicle."""
        if e.action not in ("publish", "revoke"):
            return True
        if self._operator is not None:
            return False
        if e.action == "publish":
            return self._checkpoint() is not None
        return e.version in self._rolled_out

    def _checkpoint(self) -> Path | None:
        """A running vehicle's learner checkpoint: its model of its last final round."""
        for v in self.fleet.vehicles:
            path = v.state / "learner.ckpt"
            if v.index not in self._killed and path.is_file():
                return path
        return None

    def _publish(self, h: Happening) -> None:
        """The operator releases the fleet's newest final model: a running vehicle's learner
        checkpoint, exported, put on the mirror and named on chain."""
        source = self._checkpoint()
        assert source is not None, "fired only when ready"
        n = len(self._releases) + 1
        ckpt = self.root / f"release-{n}.ckpt"
        shutil.copyfile(source, ckpt)
        round_ = int(torch.load(ckpt, weights_only=True)["round"])
        name = f"r{n}.onnx"
        self._operator = Operator(self._release_cli(
            "publish", "--round", str(round_), "--checkpoint", str(ckpt),
            "--out", str(self.mirror.folder / name), "--uri", f"{self.mirror.url}/{name}"), h)

    def _release_cli(self, *argv: str) -> subprocess.Popen[str]:
        """``swarmdrive release ...`` as the operator runs it, in the background: its export
        and transaction take seconds, and the director keeps watching meanwhile."""
        log = self.root / "operator.log"
        with open(log, "a") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "agent", "release", *argv, "--rpc", self.fleet.rpc_url,
                 "--contract", self.fleet.contract, "--keystore", str(self.fleet.operator_key)],
                stdout=subprocess.PIPE, stderr=err, text=True)

    def _check_operator(self) -> None:
        """The operator's command, once it is done: the release it published or revoked, and
        the rollout to watch."""
        op = self._operator
        if op is None or op.proc.poll() is None:
            if op is not None and time.monotonic() - op.started > RELEASE_CLI_S:
                op.proc.kill()
                raise FleetError(f"{op.happening.what}: the release command took over "
                                 f"{RELEASE_CLI_S:.0f} s")
            return
        self._operator = None
        out = op.proc.stdout.read() if op.proc.stdout else ""
        if op.proc.returncode != 0:
            raise FleetError(f"{op.happening.what}: swarmdrive release failed (exit "
                             f"{op.proc.returncode}; see {self.root / 'operator.log'})")
        got = json.loads(out.strip().splitlines()[-1])
        if op.revoked is None:
            version = int(got["version"])
            self._releases[version] = str(got["onnx_sha256"]).removeprefix("0x")
            op.happening.what = f"publish release {version}"
            self._watch(op.happening, f"every running vehicle served release {version}",
                        self._all_serve_expected(then=version))
        else:
            self._revoked.add(op.revoked)
            self._watch(op.happening, f"every running vehicle served "
                        f"{self._expected_words()}", self._all_serve_expected())

    def _bring_back(self) -> None:
        now = time.monotonic()
        for service, when in list(self._down.items()):
            if now < when:
                continue
            del self._down[service]
            (self.broker if service == "broker" else self.anvil).start()
            self._mark_back(service)
            self.progress(f"event: {service} back")

    def _watch(self, h: Happening, recovery: str, done: Callable[[], bool]) -> None:
        h.recovery = recovery
        self._watching.append((h, done))

    def _check_recoveries(self) -> None:
        still = []
        for h, done in self._watching:
            if done():
                h.recovered_t = round(self._now(), 2)
                self.progress(f"recovered from {h.what} in {h.recovery_s:.1f} s")
            else:
                still.append((h, done))
        self._watching = still

    def _reported_round(self, i: int) -> Callable[[], bool]:
        since = time.time()

        def done() -> bool:
            address = self.fleet.vehicles[i].address
            return any(t.split("/")[2] == address and t.endswith("/round")
                       and float(m.get("ts", 0)) >= since for t, m in list(self.watch.log))
        return done

    def _all_serve_expected(self, then: int | None = None) -> Callable[[], bool]:
        """Every running vehicle serves what the releases name now; ``then``: a release that
        counts as rolled out once they do."""
        want = self._expected()

        def done() -> bool:
            if not all(h == want for h in self._serving().values()):
                return False
            if then is not None:
                self._rolled_out.add(then)
            return True
        return done

    def _a_round_from_now(self) -> Callable[[], bool]:
        now = len(self.finals)
        return lambda: len(self.finals) > now

    def _telemetry_back(self) -> Callable[[], bool]:
        self._back_at.pop("broker", None)

        def done() -> bool:
            if "broker" not in self._back_at:
                return False
            running = {v.address for v in self.fleet.vehicles if v.index not in self._killed}
            log = list(self.watch.log)[self._back_at["broker"]:]
            return running <= {t.split("/")[2] for t, _ in log}
        return done

    def _final_after_rpc(self) -> Callable[[], bool]:
        self._back_at.pop("rpc", None)
        return lambda: "rpc" in self._back_at and len(self.finals) > self._back_at["rpc"]

    def _mark_back(self, service: str) -> None:
        self._back_at[service] = len(self.watch.log if service == "broker" else self.finals)

    # --- observing ----------------------------------------------------------------------------

    def _poll_chain(self) -> None:
        if "rpc" in self._down:
            return
        try:
            head = self.ledger.head()
            new = self.ledger.finals(self._block, head)
        except Exception:  # the node is restarting: ask again at the next poll
            return
        self._block = head + 1
        for f in new:
            if f.round != len(self.finals):
                continue  # already seen (a log range asked twice)
            self.finals.append(f)
            self.record.rounds.append({"round": f.round, "model_hash": f.model_hash.hex(),
                                       "signers": len(f.signers), "block": f.block,
                                       "t": round(self._now(), 2)})

    def _score_served(self) -> None:
        for v in self.fleet.vehicles:
            try:
                entry = installed.current(v.state)
            except installed.PointerError:
                continue
            if entry is None or self._seen.get(v.index) == entry.sha256:
                continue
            self._seen[v.index] = entry.sha256
            if entry.sha256 not in self._scores:
                try:
                    clf = OnnxClassifier(installed.model_path(v.state, entry))
                except Exception:  # replaced under us by a newer install: the next poll
                    self._seen.pop(v.index)
                    continue
                predicted = np.argmax(clf.logits(self.test.images), axis=1)
                self._scores[entry.sha256] = report(predicted, self.test.labels,
                                                    CLASSES).accuracy
            self.record.accuracy.append({
                "vehicle": v.index, "round": entry.version, "t": round(self._now(), 2),
                "accuracy": round(self._scores[entry.sha256], 4)})

    def _collect_telemetry(self) -> None:
        index = {v.address: v.index for v in self.fleet.vehicles}
        profiles = fleet_profiles(len(self.fleet.vehicles))
        self.record.vehicles = [{"index": v.index, "address": v.address, "peer_id": v.peer_id,
                                 "profile": profiles[v.index].name}
                                for v in self.fleet.vehicles]
        for topic, m in list(self.watch.log):
            who = index.get(topic.split("/")[2])
            if who is None:
                continue
            leaf = topic.rsplit("/", 1)[1]
            if leaf == "round":  # by index, like everything else in the record
                self.record.round_reports.append({**m, "vehicle": who})
            elif leaf == "alarm":
                self.record.alarms.append({**m, "vehicle": who})
            elif leaf == "status":
                inference = m.get("inference") or {}
                self.record.memory[str(who)] = {"learn_rss_mb": m.get("rss_mb"),
                                                "serve_rss_mb": inference.get("rss_mb")}


def _describe(e: Event) -> str:
    if e.action in ("kill", "restart"):
        return f"{e.action} vehicle {e.vehicle}"
    if e.action == "byzantine":
        return f"vehicle {e.vehicle} turns byzantine ({e.attack})"
    if e.action == "register":
        return "register a new vehicle"
    if e.action == "publish":
        return "publish a release"
    if e.action == "revoke":
        return f"revoke release {e.version}"
    return f"{'broker' if e.action == 'broker_down' else 'RPC node'} down {e.seconds:g} s"


def _serving_id(state: Path, ota: str) -> str | None:
    """What the vehicle in ``state`` serves: its model hash (``ota`` "swarm"); its file's
    sha256, or "genesis" for the factory model ("release")."""
    with contextlib.suppress(installed.PointerError):
        entry = installed.current(state)
        if entry is None:
            return None
        if ota == "swarm":
            return entry.model_hash
        return "genesis" if entry.source == "genesis" else entry.sha256
    return None


def run_baselines(sc: Scenario) -> dict[str, Any]:
    """Each vehicle alone and one central model with the fleet's steps, trained in this
    process on the same profiles' drives (``sim.fleet``): the lines the swarm should beat and
    approach."""
    from sim.fleet import FleetConfig, make_fleet_data, run_central, run_local

    f = sc.fleet
    cfg = FleetConfig(vehicles=f.vehicles, rounds=f.rounds, local_steps=f.local_steps,
                      batch_size=f.batch_size, lr=f.lr, seed=f.seed)
    data = make_fleet_data(cfg)
    local = run_local(cfg, data)
    return {"local_acc": [round(a, 4) for a in local],
            "local_acc_mean": round(sum(local) / len(local), 4),
            "local_acc_min": round(min(local), 4),
            "central_acc": round(run_central(cfg, data), 4)}
