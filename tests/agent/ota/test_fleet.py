"""OTA on a fleet of real processes (anvil, mosquitto, a serve and a learn per vehicle) and a
real HTTP mirror: the operator publishes with ``swarmdrive release``, every vehicle serves the
release, requests go through the switch without a failure, a revocation takes the fleet back;
then one attack after another, each ending with the good release still serving and an alarm
read back from the broker with ``mosquitto_sub``.

The tests share one fleet and run in order: each one starts from the fleet serving the last
good release.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from web3 import Web3

from agent.serve import installed
from agent.serve.client import ServeClient, ServeError
from chain.keys import new_key_file
from chain.ledger import ChainParams, Web3Ledger
from models.onnx_format import INPUT_NAME, OUTPUT_NAME
from sim.mosquitto import Mosquitto
from sim.procfleet import ProcessFleet
from tests.agent.daemons import WAIT_S, mosquitto_sub, wait_until
from tests.agent.ota.test_sources import Mirror

pytestmark = pytest.mark.slow

VEHICLES = 4
PARAMS = ChainParams(min_peers=3, quorum=3, round_timeout=30, fallback_slot=10,
                     finalize_window=30)
# A long schedule: the learning rate must not decay to zero (no-op rounds) while the tests run.
# A small share: rounds only need to go on; installs and requests must not starve for CPU.
TRAINING = "local_steps = 5\nmin_samples = 16\ncpu_share = 0.2\nschedule_rounds = 1000"
OTA = ('policy = "release"\npoll_s = 1.0\nhealth_window_s = 6.0\nlatency_budget_ms = 250.0\n'
       "audit_s = 2.0\nfetch_timeout_s = 20.0\nmax_chain_age_s = 20.0")
SERVE_WITHIN_S = 60.0  # the bound: publish to every vehicle serving it


@dataclass
class Fleet:
    procs: ProcessFleet
    mirror: Mirror
    sub_log: Path
    releases: Path
    good: str = ""  # the sha256 every vehicle should serve when a test ends
    published: dict[int, bytes] = field(default_factory=dict)

    @property
    def operator(self) -> Web3Ledger:
        return self.procs.ledger(operator=True)

    def swarmdrive(self, *argv: object) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-m", "agent", *map(str, argv),
                              "--rpc", self.procs.rpc_url, "--contract", self.procs.contract],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def publish_file(self, data: bytes, round_: int, uri_path: str | None = None) -> int:
        """Put ``data`` on the mirror and name it on chain directly (the attacks' path)."""
        path = uri_path or f"/r{len(self.published) + 1}.onnx"
        self.mirror.body.setdefault(path, data)
        op = self.operator
        version = op.status().release_count + 1
        op.publish_release(version, hashlib.sha256(data).digest(), len(data), round_,
                           self.mirror.url + path)
        self.published[version] = data
        return version

    def served(self) -> list[str]:
        out = []
        for v in self.procs.vehicles:
            try:
                with ServeClient(v.socket) as c:
                    out.append(str(c.info()["model"]["sha256"]))
            except (OSError, ServeError):
                out.append("")
        return out

    def wait_serving(self, sha: str, what: str, timeout: float = 4 * WAIT_S) -> None:
        wait_until(lambda: self.served() == [sha] * VEHICLES, what, timeout=timeout)

    def messages(self, leaf: str) -> list[tuple[str, dict[str, object]]]:
        out = []
        for line in self.sub_log.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            if topic.endswith(f"/{leaf}"):
                with contextlib.suppress(ValueError):
                    out.append((topic, json.loads(payload)))
        return out

    def wait_alarm(self, name: str, words: str, since: float = 0.0,
                   active: bool = True) -> None:
        """Every vehicle raised (or cleared) ``name`` with ``words`` in its detail."""
        def raised() -> bool:
            hit = {t for t, m in self.messages("alarm")
                   if m["alarm"] == name and m["active"] == active
                   and words in str(m["detail"]) and float(str(m["ts"])) >= since}
            return len(hit) == VEHICLES
        wait_until(raised, f"alarm {name} ({words}) from every vehicle", timeout=4 * WAIT_S)

    def good_bytes(self) -> bytes:
        return next(d for d in self.published.values()
                    if hashlib.sha256(d).hexdigest() == self.good)

    def assert_still_good(self) -> None:
        assert self.served() == [self.good] * VEHICLES

    def rpc(self, method: str, *params: object) -> object:
        return Web3(Web3.HTTPProvider(self.procs.rpc_url)).provider.make_request(
            method, list(params))["result"]  # type: ignore[arg-type]

    def steps(self, version: int, vehicle: int | None = None) -> list[str]:
        """The OTA steps reported for ``version`` (by one vehicle, or by all)."""
        who = None if vehicle is None else self.procs.vehicles[vehicle].address
        return [str(m["step"]) for t, m in self.messages("ota")
                if m["version"] == version and (who is None or t.split("/")[2] == who)]


@pytest.fixture(scope="module")
def fleet(anvil, tmp_path_factory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("ota")
    broker = Mosquitto(root / "mosquitto").start()
    telemetry = f'host = "127.0.0.1"\nport = {broker.port}\ntls = false\ninterval_s = 1.0'
    procs = ProcessFleet.create(root, anvil.url, VEHICLES, PARAMS, training=TRAINING,
                                telemetry=telemetry, ota=OTA)
    mirror = Mirror()
    sub_log = root / "mosquitto_sub.log"
    sub = mosquitto_sub(broker.port, sub_log)
    try:
        for i in range(VEHICLES):
            procs.start("serve", i)
            procs.start("learn", i)
        ledger = procs.ledger()
        wait_until(lambda: ledger.status().rounds_final >= 2, "two final rounds",
                   timeout=8 * WAIT_S)
        yield Fleet(procs, mirror, sub_log, root / "releases")
    finally:
        procs.stop_all()
        sub.terminate()
        sub.wait()
        broker.stop()
        mirror.server.shutdown()


def checkpoint_round(fleet: Fleet) -> tuple[Path, int]:
    """A copy of vehicle 0's learner checkpoint and the final round its model is."""
    src = fleet.procs.vehicles[0].state / "learner.ckpt"
    dst = fleet.procs.root / f"ckpt-{len(fleet.published)}.pt"
    dst.write_bytes(src.read_bytes())
    return dst, int(torch.load(dst, weights_only=True)["round"])


def publish_cli(fleet: Fleet, name: str) -> tuple[int, str]:
    ckpt, round_ = checkpoint_round(fleet)
    out = fleet.releases / name
    fleet.releases.mkdir(exist_ok=True)
    got = fleet.swarmdrive("release", "publish", "--round", round_, "--checkpoint", ckpt,
                           "--out", out, "--uri", f"{fleet.mirror.url}/{name}",
                           "--keystore", fleet.procs.operator_key)
    data = out.read_bytes()
    fleet.mirror.body[f"/{name}"] = data
    assert got["size"] == len(data) and got["source_round"] == round_
    fleet.published[int(str(got["version"]))] = data
    return int(str(got["version"])), hashlib.sha256(data).hexdigest()


class Requests:
    """A perception client asking vehicle 0 for crops without pause, until stopped."""

    def __init__(self, socket: Path, crops: np.ndarray) -> None:
        self.socket, self.crops = socket, crops
        self.failures: list[str] = []
        self.models: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with ServeClient(self.socket) as c:
            while not self.stop.is_set():
                try:
                    a = c.crops(self.crops)
                    self.models.append(str(a["model"]["sha256"]))
                except ServeError as e:
                    self.failures.append(str(e))

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)


def test_a_release_reaches_every_vehicle_switches_without_a_failed_request_and_revokes(fleet):
    _, sha1 = publish_cli(fleet, "v1.onnx")
    fleet.wait_serving(sha1, "every vehicle serving release 1", timeout=SERVE_WITHIN_S)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 32, 32, 3), np.uint8)
    client = Requests(fleet.procs.vehicles[0].socket, crops)
    try:
        wait_until(lambda: fleet.procs.ledger().status().rounds_final >= 3, "another round",
                   timeout=4 * WAIT_S)
        v2, sha2 = publish_cli(fleet, "v2.onnx")
        fleet.wait_serving(sha2, "every vehicle serving release 2", timeout=SERVE_WITHIN_S)
    finally:
        client.finish()
    assert client.failures == []
    assert {sha1, sha2} <= set(client.models)  # the client went through the switch
    wait_until(lambda: [m["step"] for t, m in fleet.messages("ota")
                        if m["version"] == v2].count("healthy") == VEHICLES,
               "every vehicle's health window passed", timeout=4 * WAIT_S)
    fleet.swarmdrive("release", "revoke", v2, "--keystore", fleet.procs.operator_key)
    fleet.wait_serving(sha1, "every vehicle back on release 1", timeout=SERVE_WITHIN_S)
    fleet.good = sha1


def test_bytes_that_do_not_match_the_chain_are_never_installed(fleet):
    good = fleet.published[1]
    forged = bytearray(good)
    forged[-1] ^= 1
    path = "/forged.onnx"
    fleet.mirror.body[path] = bytes(forged)
    op = fleet.operator
    version = op.status().release_count + 1
    round_ = json.loads(onnx_meta(good)["swarmdrive.round"])
    # The chain names a file nobody serves correctly: the mirror has other bytes, no peer has it.
    real = bytes(good[:-8]) + b"\x00" * 8
    op.publish_release(version, hashlib.sha256(real).digest(), len(real), round_,
                       fleet.mirror.url + path)
    fleet.wait_alarm("ota_failed", "do not match the chain's sha256")
    fleet.assert_still_good()


def observer(fleet: Fleet, name: str) -> Path:
    """A new key the operator lists as an observer, once every vehicle lets it connect."""
    key = fleet.procs.root / f"{name}.key"
    account = new_key_file(key)
    op = fleet.operator
    op.set_observer(account.address, True)
    allowed = f"admission_changed allowed={VEHICLES + len(op.observers())}"
    logs = [v.folder / "learn.log" for v in fleet.procs.vehicles]
    wait_until(lambda: all(allowed in p.read_text(errors="replace") for p in logs),
               "every vehicle admitting the observer", timeout=4 * WAIT_S)
    return key


def test_a_seeding_node_alone_brings_a_release_to_the_fleet(fleet):
    key = observer(fleet, "seeder")
    ckpt, round_ = checkpoint_round(fleet)
    out = fleet.releases / "seeded.onnx"
    got = fleet.swarmdrive("release", "publish", "--round", round_, "--checkpoint", ckpt,
                           "--out", out, "--keystore", fleet.procs.operator_key)
    assert got["uri"] == ""  # no mirror: fleet peers only
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    bootstrap = [f"/ip4/127.0.0.1/tcp/{v.port}/p2p/{v.peer_id}" for v in fleet.procs.vehicles]
    with (fleet.procs.root / "seeder.log").open("wb") as log:
        seeder = subprocess.Popen(
            [sys.executable, "-m", "agent", "-vv", "release", "seed", str(out),
             "--keystore", str(key),
             "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", *bootstrap,
             "--rpc", fleet.procs.rpc_url, "--contract", fleet.procs.contract],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        fleet.wait_serving(sha, "every vehicle serving the seeded release",
                           timeout=SERVE_WITHIN_S)
    finally:
        seeder.terminate()
        seeder.wait(WAIT_S)
    assert seeder.returncode == 0
    version = int(str(got["version"]))
    wait_until(lambda: fleet.steps(version).count("healthy") == VEHICLES, "healthy everywhere")
    sources = {m["source"] for t, m in fleet.messages("ota")
               if m["version"] == version and m["step"] == "fetched"}
    assert sources == {"peer"}
    fleet.good = sha
    fleet.published[version] = out.read_bytes()


# A fleet member (an observer key) whose node serves other bytes under a release's hash.
FORGER = """
import logging
import sys
from pathlib import Path

import trio
from web3 import Web3

from agent.ota.seed import seed
from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from agent.swarm.chainview import AsyncLedger
from chain.keys import load_key
from chain.ledger import Web3Ledger

rpc, contract, key, files, *bootstrap = sys.argv[1:]
logging.basicConfig(level=logging.INFO)
w3 = Web3(Web3.HTTPProvider(rpc))
account = load_key(Path(key))
trio.run(seed, Identity.from_secret(bytes(account.key)),
         Fleet(w3.eth.chain_id, bytes.fromhex(contract[2:])),
         AsyncLedger(Web3Ledger(w3, contract, None)),
         {bytes.fromhex(sha): Path(path).read_bytes()
          for sha, path in (f.split("=") for f in files.split(","))}, "/ip4/127.0.0.1/tcp/0",
         tuple(bootstrap))
"""


def forger(fleet: Fleet, name: str, bodies: dict[bytes, bytes]) -> subprocess.Popen[bytes]:
    """A member node (a new observer key) serving each body under the sha256 it maps from."""
    key = observer(fleet, name)
    files = []
    for i, (sha, body) in enumerate(bodies.items()):
        path = fleet.procs.root / f"{name}-{i}.bin"
        path.write_bytes(body)
        files.append(f"{sha.hex()}={path}")
    bootstrap = [f"/ip4/127.0.0.1/tcp/{v.port}/p2p/{v.peer_id}" for v in fleet.procs.vehicles]
    with (fleet.procs.root / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-c", FORGER, fleet.procs.rpc_url,
                                 fleet.procs.contract, str(key), ",".join(files), *bootstrap],
                                stdout=log, stderr=subprocess.STDOUT)


def test_a_peer_serving_wrong_or_endless_bytes_under_a_release_hash_is_refused(fleet):
    good = fleet.good_bytes()
    round_ = json.loads(onnx_meta(good)["swarmdrive.round"])
    real, real_big = stamp(good, "never served"), stamp(good, "never served either")
    real_sha, big_sha = hashlib.sha256(real).digest(), hashlib.sha256(real_big).digest()
    proc = forger(fleet, "forger", {real_sha: stamp(good, "forged"),  # other bytes
                                    big_sha: real_big + bytes(1 << 22)})  # past the size
    try:
        op = fleet.operator
        op.publish_release(op.status().release_count + 1, real_sha, len(real), round_, "")
        fleet.wait_alarm("ota_failed", "payload hash does not match")
        op.publish_release(op.status().release_count + 1, big_sha, len(real_big), round_, "")
        fleet.wait_alarm("ota_failed", f"over the {len(real_big)}-byte limit")
    finally:
        proc.terminate()
        proc.wait(WAIT_S)
    fleet.assert_still_good()


def test_a_mirror_streaming_past_the_size_is_cut_off(fleet):
    data = stamp(fleet.published[1], "endless")
    round_ = json.loads(onnx_meta(data)["swarmdrive.round"])
    fleet.mirror.extra = 1 << 22
    try:
        fleet.publish_file(data, round_, "/endless.onnx")
        fleet.wait_alarm("ota_failed", "endless data")
    finally:
        # The release itself is sound: once a source serves it right, vehicles take it. Here
        # none ever does.
        fleet.mirror.body.pop("/endless.onnx")
        fleet.mirror.extra = 0
    fleet.assert_still_good()


def test_a_file_of_another_round_is_refused(fleet):
    data = fleet.published[1]
    round_ = json.loads(onnx_meta(data)["swarmdrive.round"])
    other = round_ + 1  # final, with another model
    fleet.publish_file(stamp(data, "mix"), other)
    fleet.wait_alarm("ota_failed", f"names round {round_}, the release round {other}")
    fleet.assert_still_good()


def test_a_model_that_fails_the_smoke_test_is_refused(fleet):
    data = fleet.published[1]
    round_ = json.loads(onnx_meta(data)["swarmdrive.round"])
    fleet.publish_file(poisoned(data, threshold=None), round_)
    fleet.wait_alarm("ota_failed", "non-finite output")
    fleet.assert_still_good()


def test_a_model_that_fails_its_health_window_is_rolled_back(fleet):
    data = fleet.published[1]
    round_ = json.loads(onnx_meta(data)["swarmdrive.round"])
    bad = poisoned(data, threshold=-1.7)  # NaN only on black crops: the smoke test passes
    bad_sha = hashlib.sha256(bad).hexdigest()
    fleet.publish_file(bad, round_)
    dark = np.zeros((2, 32, 32, 3), np.uint8)
    clients = []
    try:
        wait_until(lambda: any(s == bad_sha for s in fleet.served()), "the release switched in",
                   timeout=SERVE_WITHIN_S)
        clients = [Requests(v.socket, dark) for v in fleet.procs.vehicles]
        fleet.wait_alarm("ota_rolled_back", "outputs were not finite")
    finally:
        for c in clients:
            c.finish()
    fleet.wait_serving(fleet.good, "every vehicle back on the good release")


def test_a_model_file_changed_on_disk_is_caught_and_repaired(fleet):
    v = fleet.procs.vehicles[0]
    entry = installed.current(v.state)
    assert entry is not None and entry.sha256 == fleet.good
    path = installed.model_path(v.state, entry)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    wait_until(lambda: any(m["alarm"] == "model_file_tampered" and m["active"]
                           and t.split("/")[2] == v.address
                           for t, m in fleet.messages("alarm")), "the tamper alarm",
               timeout=4 * WAIT_S)
    wait_until(lambda: installed.file_sha256(path) == fleet.good, "the file repaired")
    fleet.assert_still_good()


def test_a_learner_killed_in_the_middle_of_an_install_comes_back_serving_a_verified_model(fleet):
    victim = 1
    log = fleet.procs.vehicles[victim].folder / "learn.log"
    before = log.stat().st_size
    data = stamp(fleet.good_bytes(), "kill")
    sha = hashlib.sha256(data).hexdigest()
    round_ = json.loads(onnx_meta(data)["swarmdrive.round"])
    version = fleet.publish_file(data, round_)
    wait_until(lambda: f"ota version={version} step=installed" in
               log.read_bytes()[before:].decode(errors="replace"), "the install on vehicle 1",
               timeout=SERVE_WITHIN_S)
    proc = fleet.procs.procs.pop(("learn", victim))
    proc.send_signal(signal.SIGKILL)  # inside its health window: the switch is not confirmed
    proc.wait()
    entry = installed.current(fleet.procs.vehicles[victim].state)
    assert entry is not None and installed.file_sha256(
        installed.model_path(fleet.procs.vehicles[victim].state, entry)) == entry.sha256
    fleet.procs.start("learn", victim)
    fleet.wait_serving(sha, "every vehicle serving the release", timeout=SERVE_WITHIN_S)
    wait_until(lambda: "healthy" in fleet.steps(version, victim), "vehicle 1 healthy again",
               timeout=4 * WAIT_S)
    fleet.good = sha


def test_a_chain_that_stops_advancing_raises_chain_frozen(fleet):
    # anvil mines only when a transaction comes, so a slow round may have raised the alarm
    # already, naming an older block. With a block mined now, the alarm we wait for names it.
    t0 = time.time()
    fleet.rpc("evm_mine")
    fleet.rpc("evm_setAutomine", False)
    try:
        fleet.wait_alarm("chain_frozen", "no new block since", since=t0)
    finally:
        back = time.time()  # before the block: a vehicle may clear the alarm before rpc returns
        fleet.rpc("evm_setAutomine", True)
        fleet.rpc("evm_mine")  # blocks again, the transactions that waited included
    fleet.wait_alarm("chain_frozen", "no new block since", since=back, active=False)
    fleet.assert_still_good()


def test_a_chain_view_older_than_the_served_release_is_refused(fleet):
    # Last: the chain goes back in time, as a stale or forged node would show it.
    snapshot = fleet.rpc("evm_snapshot")
    version, sha = publish_cli(fleet, "newest.onnx")
    fleet.wait_serving(sha, "every vehicle serving the newest release", timeout=SERVE_WITHIN_S)
    wait_until(lambda: fleet.steps(version).count("healthy") == VEHICLES, "healthy everywhere")
    t0 = time.time()
    assert fleet.rpc("evm_revert", snapshot) is True  # the chain forgets that release
    fleet.wait_alarm("ota_rollback_refused", f"serves release {version}", since=t0)
    assert fleet.served() == [sha] * VEHICLES  # nothing older was installed


# --- crafted models -----------------------------------------------------------------------------

def onnx_meta(data: bytes) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}


def stamp(data: bytes, note: str) -> bytes:
    """The same model with another doc string: other bytes, same metadata."""
    proto = onnx.load_from_string(data)
    proto.doc_string = note
    return proto.SerializeToString()


def poisoned(data: bytes, threshold: float | None) -> bytes:
    """The model with ``sqrt(max(input) - threshold)`` added to every logit: NaN for crops
    with no value above ``threshold`` (normalised: black crops), or for every crop
    (``threshold`` None)."""
    proto = onnx.load_from_string(data)
    g = proto.graph
    for node in g.node:
        node.output[:] = [o if o != OUTPUT_NAME else "raw_logits" for o in node.output]
    c = np.array([np.nan if threshold is None else -threshold], np.float32)
    g.initializer.append(helper.make_tensor("poison_c", TensorProto.FLOAT, [1], c))
    g.node.extend([
        helper.make_node("ReduceMax", [INPUT_NAME], ["poison_m"], keepdims=0),
        helper.make_node("Add", ["poison_m", "poison_c"], ["poison_s"]),
        helper.make_node("Sqrt", ["poison_s"], ["poison_r"]),
        helper.make_node("Add", ["raw_logits", "poison_r"], [OUTPUT_NAME]),
    ])
    return proto.SerializeToString()
