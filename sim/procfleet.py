"""A fleet of real processes: each vehicle a ``swarmdrive serve`` and a ``swarmdrive learn``
with its own key, state folder and generated config, as on the road; the chain is anvil.

``ProcessFleet.create`` deploys the contract (genesis: the factory model), registers and funds
each vehicle's key and writes its config; ``start_*``/``stop`` run the processes. The tests and
``swarmdrive sim --processes`` drive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from web3 import Web3

from agent.learn.daemon import factory_hash
from agent.p2p.identity import Identity
from agent.serve import installed
from agent.serve.client import ServeClient
from agent.swarm.driver import FAST_POLL_S
from chain.keys import load_key, new_key_file
from chain.launch import Anvil, free_port, fund
from chain.ledger import ChainParams, RoundFinal, Web3Ledger, deploy
from models.family import FAMILIES, Data, Net
from models.layout import ModelLayout, flat_hash
from sim.cpubudget import CpuBudget, join
from sim.fleet import FleetConfig
from sim.mosquitto import Mosquitto
from sim.profiles import fleet_profiles
from sim.telemetry_watch import TelemetryWatch

STOP_S = 10.0  # SIGTERM, then SIGKILL after this long
# What the systemd units put in each process's environment (systemd/*.service).
UNIT_ENV = {"learn": {"MALLOC_ARENA_MAX": "2"}, "serve": {}}
POLL_S = 1.0


@dataclass(frozen=True)
class VehicleSetup:
    index: int
    folder: Path  # config, key, state, socket, logs
    config: Path
    address: str
    peer_id: str
    port: int

    @property
    def socket(self) -> Path:
        return self.folder / "serve.sock"

    @property
    def state(self) -> Path:
        return self.folder / "state"


@dataclass
class ProcessFleet:
    root: Path
    rpc_url: str
    contract: str
    vehicles: list[VehicleSetup]
    operator_key: Path  # the contract's operator (mode 0600): releases, membership
    procs: dict[tuple[str, int], subprocess.Popen[bytes]] = field(default_factory=dict)
    # What each vehicle's config is made of (see ``create``).
    seed: int = 0
    training: str = ""
    telemetry: str = ""
    ota: str = 'policy = "swarm"'
    camera_fps: float = 5.0  # frames each simulated camera keeps per second
    model: str = "classifier"  # training.model: what the fleet learns (its genesis)
    cpu_budget: CpuBudget | None = None  # each vehicle's processes in a cgroup of their own

    @classmethod
    def create(cls, root: Path, rpc_url: str, n: int, params: ChainParams, seed: int = 0,
               training: str = "", telemetry: str = "", ota: str = 'policy = "swarm"',
               camera_fps: float = 5.0, model: str = "classifier") -> ProcessFleet:
        """Deploy, register ``n`` vehicles and write their configs under ``root``. Each
        vehicle's source is the simulator's camera in its profile's town and weathers;
        ``training``, ``telemetry`` and ``ota`` are TOML lines for those sections (by default
        each vehicle serves the swarm's latest final round); ``model`` is what they learn."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        operator = new_key_file(root / "operator.key")
        fund(w3, operator.address)
        contract = deploy(w3, operator, bytes.fromhex(factory_hash(FAMILIES[model])), params)
        fleet = cls(root, rpc_url, contract, [], root / "operator.key", seed=seed,
                    training=training, telemetry=telemetry, ota=ota, camera_fps=camera_fps,
                    model=model)
        for _ in range(n):
            fleet.add_vehicle(write_config=False)
        for v in fleet.vehicles:
            fleet._write_config(v)
        return fleet

    def add_vehicle(self, write_config: bool = True) -> VehicleSetup:
        """A new vehicle: its key, funded and registered by the operator, and (unless
        ``write_config`` is False) its config, bootstrapping from the vehicles before it."""
        i = len(self.vehicles)
        folder = self.root / f"vehicle-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        account = new_key_file(folder / "vehicle.key")
        ledger = self.ledger(operator=True)
        fund(ledger.w3, account.address)
        ledger.register(account.address)
        ident = Identity.from_secret(bytes(account.key))
        v = VehicleSetup(i, folder, folder / "vehicle.toml", account.address,
                         str(ident.peer_id), free_port())
        self.vehicles.append(v)
        if write_config:
            self._write_config(v)
        return v

    def _write_config(self, v: VehicleSetup) -> None:
        profile = fleet_profiles(len(self.vehicles))[v.index]
        bootstrap = [f'"/ip4/127.0.0.1/tcp/{o.port}/p2p/{o.peer_id}"'
                     for o in self.vehicles if o is not v]
        sources = "".join(
            f'[[sources]]\nname = "cam{k}"\n'
            f'uri = "sim:{profile.town}/{w}?seed={self.seed * 1000 + v.index * 10 + k}"\n'
            f"fps = {self.camera_fps}\n\n" for k, w in enumerate(profile.weathers))
        v.config.write_text(
            f'log_level = "info"\n\n[vehicle]\nkey_file = "vehicle.key"\n'
            f'state_dir = "state"\n\n{sources}'
            f'[training]\nmodel = "{self.model}"\n{self.training}\n\n'
            f'[p2p]\nlisten = "/ip4/127.0.0.1/tcp/{v.port}"\n'
            f"bootstrap = [{', '.join(bootstrap)}]\n\n"
            f'[chain]\nrpc_url = "{self.rpc_url}"\ncontract = "{self.contract}"\n'
            f"poll_s = {FAST_POLL_S}\n\n"
            f'[serve]\nsocket = "serve.sock"\n\n[ota]\n{self.ota}\n\n'
            + (f"[telemetry]\n{self.telemetry}\n" if self.telemetry else ""))

    def ledger(self, operator: bool = False) -> Web3Ledger:
        """The fleet contract, read-only or signing as its operator."""
        account = load_key(self.operator_key) if operator else None
        return Web3Ledger(Web3(Web3.HTTPProvider(self.rpc_url)), self.contract, account)

    def start(self, role: str, i: int, env: dict[str, str] | None = None,
              command: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """``swarmdrive ROLE --config`` for vehicle ``i`` (role: serve or learn), or another
        ``swarmdrive`` ``command`` in ROLE's place; its output goes to ``ROLE.log`` in the
        vehicle's folder."""
        v = self.vehicles[i]
        budget = None if self.cpu_budget is None else partial(join, self.cpu_budget.entry(i))
        log = open(v.folder / f"{role}.log", "ab")  # noqa: SIM115  # the child owns it
        try:
            proc = subprocess.Popen([sys.executable, "-m", "agent", *(command or (role,)),
                                     "--config", str(v.config.absolute())], stdout=log,
                                    stderr=subprocess.STDOUT,
                                    env={**os.environ, **UNIT_ENV[role], **(env or {})},
                                    cwd=v.folder, preexec_fn=budget)
        finally:
            log.close()
        self.procs[(role, i)] = proc
        return proc

    def stop(self, role: str, i: int) -> int | None:
        """SIGTERM, then SIGKILL if it has not gone after ``STOP_S``; its exit code."""
        proc = self.procs.pop((role, i), None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def kill(self, i: int) -> None:
        """SIGKILL vehicle ``i``'s processes, as a power cut would."""
        for role in ("learn", "serve"):
            proc = self.procs.pop((role, i), None)
            if proc is not None:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for role, i in list(self.procs):
            self.stop(role, i)

    def memory(self) -> dict[str, dict[int, dict[str, float]]]:
        """Each running process's memory in MB, by role and vehicle: ``rss`` (resident, shared
        library pages counted in full), ``pss`` (shared pages split between the processes
        that map them: these add up to what the fleet uses) and ``uss`` (private to it)."""
        out: dict[str, dict[int, dict[str, float]]] = {}
        for (role, i), proc in self.procs.items():
            fields = _smaps_rollup(proc.pid)
            if fields:
                out.setdefault(role, {})[i] = {
                    "rss": fields["Rss"], "pss": fields["Pss"],
                    "uss": fields["Private_Clean"] + fields["Private_Dirty"]}
        return out

    def check_alive(self) -> None:
        """``FleetError`` naming a vehicle process that has exited, with its last log line."""
        for (role, i), proc in self.procs.items():
            if proc.poll() is not None:
                lines = (self.vehicles[i].folder / f"{role}.log").read_text(
                    errors="replace").strip().splitlines()
                raise FleetError(f"vehicle {i}'s {role} exited with {proc.returncode}: "
                                 f"{lines[-1] if lines else '(no output)'}")

    def wait_rounds(self, rounds: int, deadline: float,
                    progress: Callable[[RoundFinal], None] | None) -> list[RoundFinal]:
        """The chain's first ``rounds`` final rounds, as they become final."""
        ledger, block = self.ledger(), 0
        finals: list[RoundFinal] = []
        while len(finals) < rounds:
            self.check_alive()
            if time.monotonic() > deadline:
                raise FleetError(f"only {len(finals)} of {rounds} rounds final in time")
            head = ledger.head()
            for f in ledger.finals(block, head):
                finals.append(f)
                if progress:
                    progress(f)
            block = head + 1
            time.sleep(POLL_S)
        return finals[:rounds]

    def wait_installed(self, round_: int, deadline: float) -> None:
        """Until every vehicle's inference service has been handed ``round_``'s model."""
        for v in self.vehicles:
            while True:
                self.check_alive()
                entry = installed.current(v.state)
                if entry is not None and entry.version >= round_:
                    break
                if time.monotonic() > deadline:
                    raise FleetError(f"vehicle {v.index} never installed round {round_}")
                time.sleep(POLL_S)

    def served_hashes(self) -> dict[int, str]:
        """The model each vehicle's inference service answers with, asked over its socket."""
        out = {}
        for v in self.vehicles:
            with ServeClient(v.socket) as c:
                out[v.index] = str(c.info()["model"]["hash"])
        return out

    def evaluate(self, test: Data, served: dict[int, str]
                 ) -> tuple[dict[str, dict[str, object]], Net]:
        """Each vehicle's final model (its checkpoint) on ``test`` (``accuracy``: the family's
        metric); and one of them."""
        out: dict[str, dict[str, object]] = {}
        family = FAMILIES[self.model]
        net = family.new_model()
        layout = ModelLayout.of(net.state_dict())
        for v, profile in zip(self.vehicles, fleet_profiles(len(self.vehicles)), strict=True):
            blob = torch.load(v.state / "learner.ckpt", weights_only=True)
            model = blob["model"].numpy().astype(np.float32)
            net.load_state_dict(layout.unflatten(model))
            out[v.address] = {"index": v.index, "peer_id": v.peer_id, "profile": profile.name,
                              "round": int(blob["round"]),
                              "accuracy": family.score(net, test),
                              "model_hash": flat_hash(layout, model),
                              "served_model_hash": served.get(v.index)}
        return out, net


def _smaps_rollup(pid: int) -> dict[str, float]:
    """/proc/PID/smaps_rollup's kB fields in MB; empty if the process has gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = round(int(rest.split()[0]) / 1024, 1)
    return fields


class FleetError(Exception):
    """A vehicle process died or the fleet stopped making progress; the message says which."""

    exit_code = 3


@dataclass(frozen=True)
class ProcessResult:
    vehicles: dict[str, dict[str, object]]  # address -> index, profile, accuracy, hashes
    chain_model_hash: str
    rounds: list[dict[str, object]]
    telemetry: dict[str, dict[str, int]]  # vehicle -> topic leaf -> messages received
    round_reports: list[dict[str, object]]  # every vehicle's round messages (with timings)
    contract: str
    seconds: float
    model: Net  # the chain's final model
    memory: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # at the end


def run_process_fleet(cfg: FleetConfig, test: Data, root: Path, params: ChainParams,
                      progress: Callable[[RoundFinal], None] | None = None,
                      timeout_s: float = 3600.0, cpu_share: float = 1.0,
                      train_ahead: bool = True, camera_fps: float = 5.0,
                      cpu_per_vehicle: float | None = None) -> ProcessResult:
    """``cfg.rounds`` rounds of a fleet of real processes (anvil, mosquitto, a serve and a
    learn per vehicle) under ``root``; each vehicle stops taking part after the last round.
    With ``cpu_per_vehicle`` (cores), each vehicle's two processes share that CPU quota
    (``CpuBudget``), whatever the fleet's size."""
    t0 = time.monotonic()
    training = (f"local_steps = {cfg.local_steps}\nbatch_size = {cfg.batch_size}\n"
                f"lr = {cfg.lr}\nschedule_rounds = {cfg.rounds}\nmin_samples = 32\n"
                f"cpu_share = {cpu_share}\nlast_round = {cfg.rounds - 1}\n"
                f"train_ahead = {str(train_ahead).lower()}\n"
                f"precision = \"{'bf16' if cfg.bf16 else 'fp32'}\"")
    budget = contextlib.nullcontext(None) if cpu_per_vehicle is None \
        else CpuBudget(cpu_per_vehicle)
    with Anvil(root / "anvil.json") as chain, Mosquitto(root / "mosquitto") as broker, \
            budget as cpu_budget:
        telemetry = (f'host = "127.0.0.1"\nport = {broker.port}\ntls = false\n'
                     "interval_s = 5.0")
        fleet = ProcessFleet.create(root, chain.url, cfg.vehicles, params, cfg.seed,
                                    training=training, telemetry=telemetry,
                                    camera_fps=camera_fps, model=cfg.model)
        fleet.cpu_budget = cpu_budget
        with TelemetryWatch("127.0.0.1", broker.port) as watch:
            try:
                for i in range(cfg.vehicles):
                    fleet.start("serve", i)
                    fleet.start("learn", i)
                finals = fleet.wait_rounds(cfg.rounds, t0 + timeout_s, progress)
                fleet.wait_installed(cfg.rounds - 1, t0 + timeout_s)
                served = fleet.served_hashes()
                memory = fleet.memory()
            finally:
                fleet.stop_all()
            counts = watch.summary()
            reports = [m for t, m in watch.log if t.endswith("/round")]
    vehicles, model = fleet.evaluate(test, served)
    chain_hash = finals[-1].model_hash.hex()
    rounds = [{"round": f.round, "model_hash": f.model_hash.hex(), "signers": len(f.signers),
               "block": f.block} for f in finals]
    return ProcessResult(vehicles, chain_hash, rounds, counts, reports, fleet.contract,
                         time.monotonic() - t0, model, memory)
