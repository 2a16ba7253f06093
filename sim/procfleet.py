"""A fleet of real processes: each vehicle a ``swarmdrive serve`` and a ``swarmdrive learn``
with its own key, state folder and generated config, as on the road; the chain is anvil.

``ProcessFleet.create`` deploys the contract (genesis: the factory model), registers and funds
each vehicle's key and writes its config; ``start_*``/``stop`` run the processes. The tests and
``swarmdrive sim --processes`` drive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from web3 import Web3

from agent.learn.daemon import factory_hash
from agent.p2p.identity import Identity
from chain.keys import new_key_file
from chain.launch import free_port, fund
from chain.ledger import ChainParams, Web3Ledger, deploy
from sim.profiles import fleet_profiles

STOP_S = 10.0  # SIGTERM, then SIGKILL after this long


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
    procs: dict[tuple[str, int], subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, rpc_url: str, n: int, params: ChainParams, seed: int = 0,
               training: str = "", telemetry: str = "") -> ProcessFleet:
        """Deploy, register ``n`` vehicles and write their configs under ``root``. Each
        vehicle's source is the simulator's camera in its profile's town and weathers;
        ``training`` and ``telemetry`` are TOML lines for those sections."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        operator = Account.create()
        fund(w3, operator.address)
        contract = deploy(w3, operator, bytes.fromhex(factory_hash()), params)
        ledger = Web3Ledger(w3, contract, operator)
        setups = []
        for i in range(n):
            folder = root / f"vehicle-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            account = new_key_file(folder / "vehicle.key")
            fund(w3, account.address)
            ledger.register(account.address)
            ident = Identity.from_secret(bytes(account.key))
            setups.append(VehicleSetup(i, folder, folder / "vehicle.toml", account.address,
                                       str(ident.peer_id), free_port()))
        for v, profile in zip(setups, fleet_profiles(n), strict=True):
            bootstrap = [f'"/ip4/127.0.0.1/tcp/{o.port}/p2p/{o.peer_id}"'
                         for o in setups if o is not v]
            sources = "".join(
                f'[[sources]]\nname = "cam{k}"\n'
                f'uri = "sim:{profile.town}/{w}?seed={seed * 1000 + v.index * 10 + k}"\n'
                f"fps = 5.0\n\n" for k, w in enumerate(profile.weathers))
            v.config.write_text(
                f'log_level = "info"\n\n[vehicle]\nkey_file = "vehicle.key"\n'
                f'state_dir = "state"\n\n{sources}'
                f"[training]\n{training}\n\n"
                f'[p2p]\nlisten = "/ip4/127.0.0.1/tcp/{v.port}"\n'
                f"bootstrap = [{', '.join(bootstrap)}]\n\n"
                f'[chain]\nrpc_url = "{rpc_url}"\ncontract = "{contract}"\n\n'
                f'[serve]\nsocket = "serve.sock"\n\n'
                + (f"[telemetry]\n{telemetry}\n" if telemetry else ""))
        return cls(root, rpc_url, contract, setups)

    def ledger(self) -> Web3Ledger:
        return Web3Ledger(Web3(Web3.HTTPProvider(self.rpc_url)), self.contract, None)

    def start(self, role: str, i: int, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """``swarmdrive ROLE --config`` for vehicle ``i`` (role: serve or learn); its output
        goes to ``ROLE.log`` in the vehicle's folder."""
        v = self.vehicles[i]
        log = open(v.folder / f"{role}.log", "ab")  # noqa: SIM115  # the child owns it
        try:
            proc = subprocess.Popen([sys.executable, "-m", "agent", role, "--config",
                                     str(v.config)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, cwd=v.folder)
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

    def stop_all(self) -> None:
        for role, i in list(self.procs):
            self.stop(role, i)
