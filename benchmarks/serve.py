"""The inference service's latency at batch 1 over its Unix socket, idle and while the
learner trains beside it, and both processes' memory.

One vehicle on anvil: ``swarmdrive serve`` serving the factory model, and ``swarmdrive learn``
training on its simulated camera at its full budget (cpu_share 1.0), each at the niceness
its systemd unit gives it (learn 15, serve -5 where this user may lower it), the learner with
the unit's MALLOC_ARENA_MAX. Per run, ``--requests`` one-crop
requests each: the bare ONNX Runtime call in this process (the same ``classify`` the server
runs), the service idle, and the service while the learner trains.
  p50_ms, p99_ms           the service, idle
  p99_ms_while_training    the service while the learner trains
  overhead_ms_p50          service p50 - bare ORT p50 (framing, socket, the worker thread)
  serve_rss_mb, learn_rss_mb  peak resident memory seen (learner: while training)
Targets (issue 11): overhead <= 1 ms, p99 while training <= 1.5 x idle p99, serve <= 150 MB,
learn <= 600 MB. Each figure is the median over ``--repeats`` runs.

Prints {"p50_ms": ..., "p99_ms": ..., "p99_ms_while_training": ..., "overhead_ms_p50": ...,
"serve_rss_mb": ..., "learn_rss_mb": ...} as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.learn.daemon import BufferedLearner
from agent.learn.publish import publish
from agent.serve import installed
from agent.serve.client import ServeClient, ServeError
from benchmarks.common import log, setup_threads
from chain.launch import Anvil
from chain.ledger import ChainParams
from models.codec import FLEET_CODEC
from models.data import CropSet
from models.layout import flat_hash
from models.runtime import OnnxClassifier
from models.train import TrainConfig
from sim.procfleet import ProcessFleet

ALONE = ChainParams(min_peers=1, quorum=1, round_timeout=30, fallback_slot=10,
                    finalize_window=20)
TRAINING = "local_steps = 30\nmin_samples = 32\ncpu_share = 1.0\nthreads = 1"
LEARN_NICE, SERVE_NICE = 15, -5  # as systemd/swarmdrive-{learn,serve}.service set them


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def install_factory_model(state: Path) -> Path:
    from agent.learn.buffer import SampleBuffer

    buffer = SampleBuffer(state / "scratch", 32, 10, 3600, 0.0)
    learner = BufferedLearner(buffer, 1, 1.0, TrainConfig(), FLEET_CODEC, 100, 0)
    model = learner.weights()
    empty = CropSet(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0,), np.int64))
    entry = publish(state, learner.layout, model, flat_hash(learner.layout, model), 0,
                    "genesis", empty).entry
    return installed.model_path(state, entry)


def connect(sock: Path) -> ServeClient:
    end = time.monotonic() + 120
    while True:
        try:
            c = ServeClient(sock)
            c.info()
            return c
        except ServeError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def one_run(anvil: Anvil, root: Path, n: int) -> dict[str, float]:
    fleet = ProcessFleet.create(root, anvil.url, 1, ALONE, training=TRAINING)
    v = fleet.vehicles[0]
    onnx = install_factory_model(v.state)
    crop = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), np.uint8)
    bare_clf = OnnxClassifier(onnx, threads=1)
    try:
        serve = fleet.start("serve", 0)
        with contextlib.suppress(PermissionError):  # lowering it takes root, as systemd has
            os.setpriority(os.PRIO_PROCESS, serve.pid, SERVE_NICE)
        with connect(v.socket) as c:
            timed(lambda: c.crops(crop), 200)  # warm up
            bare = timed(lambda: bare_clf.classify(crop), n)
            idle = timed(lambda: c.crops(crop), n)
            serve_rss = rss_mb(serve.pid)
            learn = fleet.start("learn", 0)
            os.setpriority(os.PRIO_PROCESS, learn.pid, LEARN_NICE)
            learn_log = v.folder / "learn.log"
            while learn_log.read_text().count("trained round") < 1:
                fleet.check_alive()
                time.sleep(0.2)
            busy: list[float] = []
            learn_rss = 0.0
            while len(busy) < n:
                busy += timed(lambda: c.crops(crop), 100)
                learn_rss = max(learn_rss, rss_mb(learn.pid))
                serve_rss = max(serve_rss, rss_mb(serve.pid))
            rounds = learn_log.read_text().count("trained round")
    finally:
        fleet.stop_all()
    out = {"p50_ms": percentile(idle, 0.5), "p99_ms": percentile(idle, 0.99),
           "p99_ms_while_training": percentile(busy, 0.99),
           "overhead_ms_p50": percentile(idle, 0.5) - percentile(bare, 0.5),
           "bare_p50_ms": percentile(bare, 0.5), "serve_rss_mb": serve_rss,
           "learn_rss_mb": learn_rss, "rounds_trained_while_measured": rounds}
    return {k: round(float(x), 3) for k, x in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    setup_threads()
    runs = []
    with tempfile.TemporaryDirectory() as tmp, Anvil(Path(tmp) / "anvil.json") as anvil:
        for k in range(args.repeats):
            runs.append(one_run(anvil, Path(tmp) / f"run{k}", args.requests))
            log(f"run {k}: {runs[-1]}")
    print(json.dumps({key: statistics.median(r[key] for r in runs) for key in runs[0]}))


if __name__ == "__main__":
    main()
