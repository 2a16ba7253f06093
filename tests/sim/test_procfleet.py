"""A fleet of real processes, as on the road: anvil, mosquitto, and a ``serve`` and a
``learn`` process per vehicle. The fleet's telemetry is read with mosquitto's own
``mosquitto_sub``; the broker goes away for 20 s and a learner is killed, and neither costs a
round."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from agent.serve import installed
from agent.serve.client import ServeClient
from chain.ledger import ChainParams
from sim.mosquitto import Mosquitto
from sim.procfleet import ProcessFleet
from tests.agent.daemons import WAIT_S, mosquitto_sub, wait_until

pytestmark = pytest.mark.slow

OUTAGE_S = 20.0  # the broker outage
PARAMS = ChainParams(min_peers=3, quorum=3, round_timeout=30, fallback_slot=10,
                     finalize_window=30)
TRAINING = "local_steps = 5\nmin_samples = 16\ncpu_share = 1.0\nschedule_rounds = 50"


def wait_fleet(pred, what: str) -> None:  # type: ignore[no-untyped-def]
    wait_until(pred, what, timeout=4 * WAIT_S)  # eight processes on a loaded 2-core machine


def messages(log: Path) -> list[tuple[str, dict[str, object]]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        topic, _, payload = line.partition(" ")
        with contextlib.suppress(ValueError):  # a line cut short while being written
            out.append((topic, json.loads(payload)))
    return out


def seen(log: Path, vehicle: str, leaf: str, since: float = 0.0) -> int:
    return len([m for t, m in messages(log)
                if t == f"swarmdrive/v1/{vehicle}/{leaf}" and float(str(m["ts"])) >= since])


def test_a_fleet_of_processes_rides_out_a_broker_outage_and_a_killed_learner(anvil, tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto").start()
    telemetry = f'host = "127.0.0.1"\nport = {broker.port}\ntls = false\ninterval_s = 2.0'
    fleet = ProcessFleet.create(tmp_path, anvil.url, 4, PARAMS, training=TRAINING,
                                telemetry=telemetry)
    ledger = fleet.ledger()
    sub_log = tmp_path / "mosquitto_sub.log"
    sub = mosquitto_sub(broker.port, sub_log)
    try:
        for i in range(4):
            fleet.start("serve", i)
            fleet.start("learn", i)
        addresses = [v.address for v in fleet.vehicles]
        wait_fleet(lambda: ledger.status().rounds_final >= 1, "round 1 final")
        wait_fleet(lambda: all(seen(sub_log, a, "status") >= 1 for a in addresses),
                   "every vehicle's status")

        # The broker goes away for 20 s: the rounds go on; telemetry resumes after.
        broker.stop()
        before = ledger.status().rounds_final
        time.sleep(OUTAGE_S)
        fleet.check_alive()
        during = ledger.status().rounds_final
        assert during > before  # no vehicle waited on the broker
        back = time.time()
        broker.start()
        wait_fleet(lambda: all(seen(sub_log, a, "status", since=back) >= 1 for a in addresses),
                   "status from every vehicle after the outage")

        # Vehicle 3's learner is killed: its server keeps serving; the others go on.
        victim = fleet.vehicles[3]
        fleet.procs[("learn", 3)].send_signal(signal.SIGKILL)
        fleet.procs.pop(("learn", 3)).wait(WAIT_S)
        killed_at = ledger.status().rounds_final
        with ServeClient(victim.socket) as c:
            answer = c.frame(np.zeros((64, 64, 3), np.uint8),
                             np.array([[4, 4, 40, 40]], np.float32))
            assert answer["ok"] and len(answer["objects"]) == 1
        wait_fleet(lambda: ledger.status().rounds_final >= killed_at + 1,
                   "a round without vehicle 3")

        # Restarted, it rejoins: it catches up with the chain and contributes again.
        restarted_at = ledger.status().rounds_final
        fleet.start("learn", 3)
        wait_fleet(lambda: any(victim.address in {e.sender for e in c.contributions}
                               for c in ledger.commitments(0) if c.round > restarted_at),
                   "vehicle 3 contributing again")
        wait_fleet(lambda: (installed.current(victim.state) or installed.Installed(
            "", "", "", -1, "")).version >= restarted_at, "vehicle 3 serving a newer round")
        wait_fleet(lambda: ledger.status().rounds_final >= 5, "five rounds")

        finals = [f.round for f in ledger.finals(0)]
        assert finals == list(range(len(finals)))  # no round lost or skipped
        for a in addresses:  # every vehicle's birth, round events and status, seen by a plain
            assert seen(sub_log, a, "state") >= 1 and seen(sub_log, a, "round") >= 1
            assert seen(sub_log, a, "status") >= 2
        births = [m for t, m in messages(sub_log) if t.endswith("/state") and m["online"]]
        assert {m["vehicle"] for m in births} == set(addresses)
        # The trainer's working seconds grow from round to round (training ahead, by default).
        busy = [float(str(m["trainer_busy_s"])) for t, m in messages(sub_log)
                if t == f"swarmdrive/v1/{addresses[0]}/round"]
        assert busy == sorted(busy) and busy[-1] > 0
        # Each round message says where the vehicle's CPU and fetch time went.
        rounds = [m for t, m in messages(sub_log) if t.endswith("/round")]
        for m in rounds:
            assert float(str(m["train_cpu_s"])) >= 0
            assert 0 <= float(str(m["loop_cpu_s"])) <= float(str(m["cpu_s"]))
            assert int(str(m["fetch_deadline"])) >= 0
        assert any(float(str(m["fetch_wire_ms"])) > 0 and float(str(m["loop_cpu_s"])) > 0
                   for m in rounds)
        memory = fleet.memory()  # what benchmarks/scale.py reports, for each process
        assert set(memory["learn"]) == set(memory["serve"]) == {0, 1, 2, 3}
        for role in memory.values():
            assert all(0 < m["uss"] <= m["pss"] <= m["rss"] for m in role.values())
        fleet.check_alive()
    finally:
        fleet.stop_all()
        sub.terminate()
        sub.wait(10)
        broker.stop()
