"""SIGTERM stops a fleet within 5 s even while its chain endpoint hangs mid-commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.swarm.driver import load_vehicle_checkpoint
from agent.swarm.learner import Learner
from chain.launch import Anvil
from sim.fleet import make_fleet_data
from tests.chain.rpc_proxy import Faults, rpc_proxy
from tests.sim.harness import SMALL

ROOT = Path(__file__).resolve().parents[2]

# A 3-vehicle libp2p fleet on a JSON-RPC chain, checkpointing every final round.
FLEET = """
import sys
from dataclasses import replace
from pathlib import Path
from sim.fleet import make_fleet_data
from sim.netfleet import NetFleetConfig, run_swarm_p2p
from tests.sim.harness import SMALL
cfg = replace(SMALL, rounds=1000)
net = NetFleetConfig(rpc_url=sys.argv[1], state_dir=Path(sys.argv[2]), round_timeout=5,
                     fallback_slot=3, finalize_window=20)
try:
    run_swarm_p2p(cfg, make_fleet_data(cfg), net)
except KeyboardInterrupt:
    sys.exit(130)
"""
COMMIT_CALLS = {"eth_estimateGas", "eth_sendRawTransaction"}


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout  # a hang guard: the test waits on events
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_mid_commit_on_a_hung_endpoint_exits_within_5s_with_checkpoints_intact(
        tmp_path: Path) -> None:
    faults = Faults()
    state, log = tmp_path / "state", tmp_path / "fleet.log"
    with Anvil(tmp_path / "anvil.json") as node, rpc_proxy(node.url, faults) as url, \
            log.open("w") as err:
        p = subprocess.Popen([sys.executable, "-c", FLEET, url, str(state)], cwd=ROOT,
                             stdout=err, stderr=err, env={**os.environ, "PYTHONPATH": "."})
        try:
            # A round is final and checkpointed; then the endpoint stops answering, and a
            # vehicle sends its next commit into the void.
            _wait(lambda: state.exists() and any(state.glob("*.ckpt")), 600, "a checkpoint")
            faults.hang_only, faults.hang = COMMIT_CALLS, True
            _wait(lambda: bool(COMMIT_CALLS & set(faults.hung)), 600,
                  "a commit on the hung endpoint")
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            seconds = time.monotonic() - t0
        finally:
            p.kill()
            faults.released.set()
    output = log.read_text()
    assert p.returncode == 130, output[-2000:]
    assert seconds <= 5.0, seconds
    assert "Traceback" not in output
    # Every checkpoint loads: written atomically, none torn by the stop.
    cfg = replace(SMALL, rounds=1000)
    data = make_fleet_data(cfg)
    ckpts = sorted(state.glob("vehicle-*.ckpt"))
    assert ckpts
    for ckpt in ckpts:
        i = int(ckpt.stem.split("-")[1])
        learner = Learner(data.train[i], cfg.train_config(), cfg.codec, cfg.total_steps,
                          seed=cfg.seed * 1000 + i)
        round_, _ = load_vehicle_checkpoint(ckpt, learner)
        assert round_ >= 0
