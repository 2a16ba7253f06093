"""An OTA release on a fleet of real processes: from the operator's transaction to every
vehicle serving it, what each vehicle downloaded, and what a perception client on every vehicle
saw through the switch.

A fleet of ``--vehicles`` (anvil, a serve and a learn per vehicle, releases followed) runs
until a round is final; the operator publishes it (``swarmdrive release publish``) with an HTTP
mirror on 127.0.0.1. Meanwhile a client per vehicle sends one-crop requests without pause.

Times run from the moment the chain first shows the release. Prints
{"publish_to_all_serving_s", "bytes_per_vehicle", "max_request_ms_during_switch",
"failed_requests", ...} as its last line.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch

from agent.serve.client import ServeClient, ServeError
from benchmarks.common import log
from chain.launch import Anvil
from chain.ledger import ChainParams
from sim.procfleet import ProcessFleet

TRAINING = "local_steps = 5\nmin_samples = 16\ncpu_share = 1.0\nschedule_rounds = 50"
OTA = 'policy = "release"\npoll_s = 2.0\nhealth_window_s = 10.0\nlatency_budget_ms = 250.0'


class Client:
    """One-crop requests to one vehicle without pause; latency and failures recorded."""

    def __init__(self, socket: Path) -> None:
        self.socket, self.failed = socket, 0
        self.ms: list[float] = []
        self.models: list[tuple[float, str]] = []  # (time, model sha256) on each change
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        crop = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), np.uint8)
        with ServeClient(self.socket) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    sha = str(c.crops(crop)["model"]["sha256"])
                except ServeError:
                    self.failed += 1
                    continue
                self.ms.append((time.perf_counter() - t0) * 1000)
                if not self.models or self.models[-1][1] != sha:
                    self.models.append((time.time(), sha))
                time.sleep(0.005)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vehicles", type=int, default=8)
    args = p.parse_args()
    n = args.vehicles
    params = ChainParams(min_peers=max(2, n // 2), quorum=max(2, n // 2 + 1), round_timeout=60,
                         fallback_slot=15, finalize_window=60)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = root / "mirror"
        files.mkdir()
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(files))
        SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
        mirror = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=mirror.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{mirror.server_address[1]}/v1.onnx"
        with Anvil(root / "anvil.json") as chain:
            fleet = ProcessFleet.create(root, chain.url, n, params, training=TRAINING, ota=OTA)
            try:
                for i in range(n):
                    fleet.start("serve", i)
                    fleet.start("learn", i)
                ledger = fleet.ledger()
                while ledger.status().rounds_final < 1:
                    fleet.check_alive()
                    time.sleep(1)
                clients = [Client(v.socket) for v in fleet.vehicles]
                ckpt = root / "release.pt"
                ckpt.write_bytes((fleet.vehicles[0].state / "learner.ckpt").read_bytes())
                round_ = int(torch.load(ckpt, weights_only=True)["round"])
                # The release's moment: when the chain first shows it (polled every 50 ms).
                on_chain: list[float] = []

                def watch() -> None:
                    while ledger.status().release_count < 1:
                        time.sleep(0.05)
                    on_chain.append(time.time())

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                out = subprocess.run(
                    [sys.executable, "-m", "agent", "release", "publish", "--round",
                     str(round_), "--checkpoint", str(ckpt), "--out", str(files / "v1.onnx"),
                     "--uri", url, "--rpc", fleet.rpc_url, "--contract", fleet.contract,
                     "--keystore", str(fleet.operator_key)],
                    capture_output=True, text=True, check=True)
                watcher.join(60)
                published = on_chain[0]
                data = (files / "v1.onnx").read_bytes()
                sha, size = hashlib.sha256(data).hexdigest(), len(data)
                log(f"published {out.stdout.strip()}")
                while not all(c.models and c.models[-1][1] == sha for c in clients):
                    fleet.check_alive()
                    if time.time() - published > 600:
                        raise SystemExit("the release did not reach every vehicle in 600 s")
                    time.sleep(0.2)
                switched = [next(t for t, s in c.models if s == sha) for c in clients]
                time.sleep(2)
                for c in clients:
                    c.stop.set()
                    c.thread.join(10)
            finally:
                fleet.stop_all()
                mirror.shutdown()
            fetched = [sum(int(b) for b in re.findall(
                r"step=fetched source=\w+ bytes=(\d+)", (v.folder / "learn.log").read_text()))
                for v in fleet.vehicles]
    window = [ms for c in clients for ms in c.ms]
    print(json.dumps({
        "vehicles": n,
        "publish_to_all_serving_s": round(max(switched) - published, 2),
        "publish_to_serving_median_s": round(statistics.median(switched) - published, 2),
        "bytes_per_vehicle": round(statistics.fmean(fetched)),
        "release_bytes": size,
        "max_request_ms_during_switch": round(max(window), 2),
        "p99_request_ms": round(float(np.percentile(window, 99)), 2),
        "requests": len(window),
        "failed_requests": sum(c.failed for c in clients),
    }))


if __name__ == "__main__":
    main()
