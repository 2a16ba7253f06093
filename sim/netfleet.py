"""The fleet over libp2p (``--transport libp2p``): N vehicle daemons in one process.

Each vehicle is the daemon's ``Vehicle``: its own key, libp2p host on 127.0.0.1, content store,
round engine and chain account. They share only what a real fleet shares: an EVM (embedded
eth-tester) holding the SwarmLedger contract, and the loopback network. Training threads take
turns on one lane because the vehicles share this machine's cores; on the road each has its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from agent.p2p.node import NodeConfig
from agent.signals import Stop, cancel_on_signal
from agent.swarm.chainview import AsyncLedger
from agent.swarm.driver import (
    RoundDone,
    RoundTiming,
    Vehicle,
    VehicleConfig,
    assemble,
)
from agent.swarm.engine import EngineConfig
from agent.swarm.learner import Learner
from chain.launch import embedded, free_port, fund
from chain.ledger import ChainParams, Web3Ledger, deploy
from models.family import Net
from models.layout import flat_hash
from sim.fleet import FleetConfig, FleetData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetFleetConfig:
    min_peers: int = 0  # 0: a majority of the fleet
    quorum: int = 0  # 0: a majority of the fleet
    round_timeout: int = 120  # the chain's round parameters (round-v2.md)
    fallback_slot: int = 20
    finalize_window: int = 60
    observers: tuple[str, ...] = ()  # addresses admitted to connect without being vehicles
    rpc_url: str | None = None  # a JSON-RPC chain (anvil) instead of the embedded EVM
    engine: EngineConfig = EngineConfig()
    state_dir: Path | None = None  # vehicle checkpoints (default: none kept)
    train_ahead: bool = False  # timing-dependent, so off: runs repeat bit for bit


@dataclass(frozen=True)
class RoundReport:
    round: int
    committer: str
    contributions: int
    model_hash: str
    seconds: float  # since the fleet started
    accuracy: float | None = None  # of the round's model on the fleet-wide test set, if asked


@dataclass
class NetResult:
    vehicles: dict[str, dict[str, object]]  # address -> accuracy, model_hash, peer_id, ...
    chain_model_hash: str
    rounds: list[RoundReport]
    timings: dict[str, list[RoundTiming]]
    stats: dict[str, dict[str, int]]
    seconds: float
    contract: str
    model: Net  # vehicle 0's final model


def vehicle_identity(seed: int, index: int) -> Identity:
    """The sim's vehicle keys: deterministic, so a restarted vehicle keeps its identity."""
    return Identity.from_secret(hashlib.sha256(f"swarmdrive-sim/{seed}/{index}".encode()).digest())


@dataclass
class NetFleet:
    """Chain, keys and addresses of a simulated fleet; builds and rebuilds its vehicles."""
    cfg: FleetConfig
    data: FleetData
    net: NetFleetConfig = NetFleetConfig()

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.identities = [vehicle_identity(cfg.seed, i) for i in range(cfg.vehicles)]
        self.ports = [free_port() for _ in self.identities]
        self.bootstrap = tuple(f"/ip4/127.0.0.1/tcp/{port}/p2p/{ident.peer_id}"
                               for port, ident in zip(self.ports, self.identities, strict=True))
        first = self.learner(0)
        self.genesis = first.weights()  # the factory model every vehicle ships with
        self.layout = first.layout
        self.w3 = embedded() if self.net.rpc_url is None else Web3(Web3.HTTPProvider(
            self.net.rpc_url, request_kwargs={"timeout": 10}))
        self.chain_lane = trio.CapacityLimiter(1)
        self.train_lane = trio.CapacityLimiter(1)
        self.work_lane = trio.CapacityLimiter(2)  # merges and payload checks
        self.contract = self._deploy()
        self.fleet = Fleet(self.w3.eth.chain_id, bytes.fromhex(self.contract[2:]))

    @property
    def params(self) -> ChainParams:
        majority = self.cfg.vehicles // 2 + 1
        n = self.net
        return ChainParams(n.min_peers or majority, n.quorum or majority, n.round_timeout,
                           n.fallback_slot, n.finalize_window)

    def _deploy(self) -> str:
        self.operator = Account.from_key(hashlib.sha256(
            f"swarmdrive-sim/{self.cfg.seed}/operator".encode()).digest())
        fund(self.w3, self.operator.address)
        address = deploy(self.w3, self.operator,
                         bytes.fromhex(flat_hash(self.layout, self.genesis)), self.params)
        ledger = Web3Ledger(self.w3, address, self.operator)
        for ident in self.identities:
            fund(self.w3, ident.address)
            ledger.register(ident.address)
        for observer in self.net.observers:
            ledger.set_observer(observer, True)
        return address

    def ledger(self, account: LocalAccount | None = None) -> Web3Ledger:
        return Web3Ledger(self.w3, self.contract, account)

    def learner(self, i: int) -> Learner:
        return Learner(self.data.train[i], self.cfg.train_config(), self.cfg.codec,
                       self.cfg.total_steps, seed=self.cfg.seed * 1000 + i,
                       family=self.cfg.family)

    def checkpoint(self, i: int) -> Path | None:
        d = self.net.state_dir
        return None if d is None else d / f"vehicle-{i}.ckpt"

    def vehicle(self, i: int, on_round: Callable[[Vehicle, RoundDone], None] | None = None
                ) -> Vehicle:
        """Vehicle ``i``, from its checkpoint if it has one (a restart), else factory-fresh."""
        ident = self.identities[i]
        vcfg = VehicleConfig(local_steps=self.cfg.local_steps, merge=self.cfg.merge,
                             engine=self.net.engine, rounds=self.cfg.rounds,
                             checkpoint=self.checkpoint(i), train_ahead=self.net.train_ahead)
        vehicle, _ = assemble(
            ident, self.fleet, AsyncLedger(self.ledger(ident.account), self.chain_lane),
            self.learner(i), NodeConfig(listen=f"/ip4/127.0.0.1/tcp/{self.ports[i]}",
                                        bootstrap=self.bootstrap),
            vcfg, self.genesis, on_round,
            lanes=(self.train_lane, self.work_lane))
        return vehicle


def run_swarm_p2p(cfg: FleetConfig, data: FleetData, net: NetFleetConfig = NetFleetConfig(),
                  progress: Callable[[RoundReport], None] | None = None,
                  evaluate_rounds: bool = False) -> NetResult:
    """R rounds of swarm learning between libp2p hosts on loopback, anchored on a chain.

    ``evaluate_rounds`` scores each round's model on the test set as the first vehicle adopts
    it (~50 ms on the fleet's loop per round: for progress reports, not for benchmarks).
    """
    fleet = NetFleet(cfg, data, net)
    t0 = time.perf_counter()
    reports: dict[int, RoundReport] = {}
    probe = fleet.learner(0)  # its own network: the vehicles' learners may be training

    def on_round(v: Vehicle, c: RoundDone) -> None:
        if c.round not in reports and c.committer:
            acc = None
            if evaluate_rounds:
                probe.load(v.model)
                acc = probe.family.score(probe.model, fleet.data.test)
            reports[c.round] = RoundReport(c.round, c.committer, c.contributions,
                                           c.model_hash.hex(), time.perf_counter() - t0, acc)
            if progress:
                progress(reports[c.round])

    vehicles = [fleet.vehicle(i, on_round) for i in range(cfg.vehicles)]
    stop = Stop()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_signal, nursery.cancel_scope, stop)
            for v in vehicles:
                nursery.start_soon(v.run)
            for v in vehicles:
                await v.done.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)
    if stop.signal is not None:
        raise KeyboardInterrupt  # every vehicle has stopped; the caller reports it
    return summarise(fleet, vehicles, sorted(reports.values(), key=lambda r: r.round),
                     time.perf_counter() - t0)


def summarise(fleet: NetFleet, vehicles: list[Vehicle], rounds: list[RoundReport],
              seconds: float) -> NetResult:
    """Each vehicle's final model on the fleet-wide test set, beside the chain's last hash."""
    chain_hash = fleet.ledger().status().latest_model.hex()
    out: dict[str, dict[str, object]] = {}
    for i, v in enumerate(vehicles):
        v.learner.load(v.model)
        acc = v.learner.family.score(v.learner.model, fleet.data.test)
        out[v.address] = {"index": i, "peer_id": str(v.node.peer_id),
                          "profile": fleet.data.profiles[i].name, "accuracy": acc,
                          "model_hash": flat_hash(v.layout, v.model)}
    stats = {v.address: dict(Counter(v.node.stats) + Counter(
        v.engine.stats if v.engine else {}) + v.stats) for v in vehicles}
    vehicles[0].learner.load(vehicles[0].model)
    return NetResult(out, chain_hash, rounds,
                     {v.address: [v.timings[r] for r in sorted(v.timings)] for v in vehicles},
                     stats, seconds, fleet.contract, vehicles[0].learner.model)

