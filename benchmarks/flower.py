"""swarmdrive beside Flower: the same model, the same vehicles' data, the same rounds.

Flower 1.42 runs its own runtime on 127.0.0.1: a SuperLink, one SuperNode per vehicle (each
told its vehicle by ``--node-config partition-id=i``) and the Flower App in
``benchmarks/flower_app`` (FedAvg over every vehicle each round; each client trains
``--local-steps`` of swarmdrive's own training loop on its crops and sends the whole model
back), submitted with ``flwr run``. The SuperNodes reach the SuperLink through a TCP relay
that counts every byte both ways, so Flower's figure is bytes on the wire (HTTP and protobuf
framing included, no TLS) while the run lasts, per client and round.

swarmdrive runs the same fleet over libp2p on 127.0.0.1 with the embedded chain
(``sim.netfleet``, its default codec: 10% of each delta at 8 bits); its figure is payload and
gossip bytes each vehicle sent and received, per round (libp2p's own Noise and yamux framing
not counted: a few percent).

Accuracy after each round is the global model's on the fleet-wide test set, for both.
Needs the ``flower`` extra (``pip install -e '.[flower]'``).

Prints {"flower": {"acc_by_round", "bytes_per_client_round"}, "swarmdrive": {"acc_by_round",
"bytes_per_vehicle_round"}, "bytes_ratio", "acc_gap_last"} as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.swarm.learner import Learner
from benchmarks.common import log, setup_threads
from chain.launch import free_port
from sim.fleet import FleetConfig, FleetData, make_fleet_data
from sim.netfleet import RoundReport, run_swarm_p2p

APP = Path(__file__).parent / "flower_app"
WAIT_S = 3600.0


class CountingRelay:
    """A TCP relay from ``listen`` to ``target`` on 127.0.0.1 that counts the bytes it moves."""

    def __init__(self, listen: int, target: int) -> None:
        self.target, self.bytes = target, 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", listen))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the SuperLink has gone (the run is over)
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):  # either side closing ends the pump
            while data := src.recv(65536):
                dst.sendall(data)
                with self._lock:
                    self.bytes += len(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def flower_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found beside {sys.executable}: install the flower extra "
                         f"(pip install -e '.[flower]')")
    return str(path)


def wait_listening(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on 127.0.0.1:{port} after "
                                 f"{timeout_s:.0f} s") from None
            time.sleep(0.5)


def run_flower(cfg: FleetConfig, data: FleetData, genesis: np.ndarray,
               root: Path) -> dict[str, Any]:
    arrays = {f"images_{i}": d.images for i, d in enumerate(data.train)}
    arrays |= {f"labels_{i}": d.labels for i, d in enumerate(data.train)}
    arrays |= {"test_images": data.test.images, "test_labels": data.test.labels,
               "genesis": genesis, "vehicles": np.array(cfg.vehicles)}
    np.savez(root / "data.npz", **arrays)  # type: ignore[arg-type]  # (allow_pickle)
    link, relay_port = free_port(), free_port()
    home = root / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    # The SuperLink and SuperNodes start Flower's other executables by name.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": path}
    procs: list[subprocess.Popen[bytes]] = []
    relay = CountingRelay(relay_port, link)

    def start(name: str, *args: str) -> None:
        out = open(root / f"{name}.log", "wb")  # noqa: SIM115  # the child owns it
        procs.append(subprocess.Popen([flower_bin(args[0]), *args[1:]], stdout=out,
                                      stderr=subprocess.STDOUT, env=env, cwd=root))
        out.close()

    try:
        start("superlink", "flower-superlink", "--insecure", "--port", str(link))
        wait_listening(link)
        for i in range(cfg.vehicles):
            start(f"supernode-{i}", "flower-supernode", "--insecure", "--superlink",
                  f"127.0.0.1:{relay_port}", "--port", str(free_port()),
                  "--node-config", f"partition-id={i} num-partitions={cfg.vehicles}")
        result = root / "result.json"
        app = root / "app"
        shutil.copytree(APP, app)
        run_config = (f'num-server-rounds={cfg.rounds} local-steps={cfg.local_steps} '
                      f'batch-size={cfg.batch_size} lr={cfg.lr} data="{root / "data.npz"}" '
                      f'result="{result}"')
        before, t0 = relay.bytes, time.monotonic()
        submit = subprocess.run([flower_bin("flwr"), "run", str(app), "bench", "--run-config",
                                 run_config], env=env, cwd=root, capture_output=True, text=True)
        if submit.returncode != 0:
            raise SystemExit(f"flwr run failed: {submit.stdout}{submit.stderr}")
        while not result.exists():
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a Flower process exited ({p.args!r}); see {root}")
            if time.monotonic() - t0 > WAIT_S:
                raise SystemExit(f"Flower's run did not finish in {WAIT_S:.0f} s; see {root}")
            time.sleep(1.0)
        moved = relay.bytes - before
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        relay.close()
    acc = json.loads(result.read_text())["accuracy"]
    return {"acc_by_round": [round(acc[str(r)], 4) for r in range(1, cfg.rounds + 1)],
            "bytes_per_client_round": round(moved / cfg.vehicles / cfg.rounds),
            "seconds": round(time.monotonic() - t0, 1)}


def run_swarmdrive(cfg: FleetConfig, data: FleetData) -> dict[str, Any]:
    reports: list[RoundReport] = []
    result = run_swarm_p2p(cfg, data, progress=reports.append, evaluate_rounds=True)
    acc = {r.round: r.accuracy for r in reports}
    per_vehicle = [(s.get("bytes_sent", 0) + s.get("bytes_received", 0)) / cfg.rounds
                   for s in result.stats.values()]
    return {"acc_by_round": [round(float(acc[r] or 0), 4) for r in range(cfg.rounds)],
            "bytes_per_vehicle_round": round(float(np.mean(per_vehicle))),
            "seconds": round(result.seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vehicles", type=int, default=8)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--local-steps", type=int, default=30)
    args = p.parse_args()
    setup_threads()
    cfg = FleetConfig(vehicles=args.vehicles, rounds=args.rounds, local_steps=args.local_steps)
    data = make_fleet_data(cfg)
    # The swarm's genesis: its first vehicle's initial model (sim.netfleet.NetFleet).
    genesis = Learner(data.train[0], cfg.train_config(), cfg.codec, cfg.total_steps,
                      seed=cfg.seed * 1000).weights()
    with tempfile.TemporaryDirectory(prefix="swarmdrive-flower-") as tmp:
        log("Flower: SuperLink, SuperNodes, flwr run")
        flower = run_flower(cfg, data, genesis, Path(tmp))
    log(f"Flower: {flower}")
    log("swarmdrive: the same fleet over libp2p")
    swarm = run_swarmdrive(cfg, data)
    log(f"swarmdrive: {swarm}")
    out = {"flower": flower, "swarmdrive": swarm,
           "bytes_ratio": round(flower["bytes_per_client_round"]
                                / swarm["bytes_per_vehicle_round"], 1),
           "acc_gap_last": round(flower["acc_by_round"][-1] - swarm["acc_by_round"][-1], 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
