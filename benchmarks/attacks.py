"""A round's time under resource attacks, against the same fleet without them.

Five registered vehicles, three of them honest: in the clean fleet the other two are silent
(registered, never started); in the attacked fleet vehicle 3 joins and answers no fetch, ever,
and vehicle 4 holds serving slots open on every honest vehicle and floods 1,000 invalid
announcements a second (sim/hostile.py). The attackers run in the fleet's own process, so
their CPU is charged to the round too: a harsher test than separate machines.

round_s is the median over honest vehicles and rounds >= 1 (round 0 includes connecting);
each figure is the median of ``--repeats`` fleets. Target: ratio <= 2.

Prints {"clean_round_s": ..., "attacked_round_s": ..., "ratio": ..., ...} as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import replace

import trio

from agent.swarm.driver import Vehicle
from benchmarks.common import log, setup_threads
from models.codec import FLEET_CODEC
from sim.fleet import FleetConfig, make_fleet_data
from sim.hostile import hog_and_flood, silent_fetcher
from sim.netfleet import NetFleet, NetFleetConfig

# The attack tests' fleet: short slots, so a hostile slot holder costs seconds, not minutes.
FLEET = FleetConfig(vehicles=5, rounds=5, local_steps=3, batch_size=16, frames_per_weather=6,
                    test_frames_per_domain=1, codec=FLEET_CODEC)
NET = NetFleetConfig(round_timeout=3, fallback_slot=2, finalize_window=4)
HONEST = 3


def run(attacked: bool, seed: int) -> dict[str, float]:
    cfg = replace(FLEET, seed=seed)
    fleet = NetFleet(cfg, make_fleet_data(cfg), NET)
    vehicles = [fleet.vehicle(i) for i in range(HONEST)]
    report: dict[str, int] = {}

    async def attack(done: trio.Event) -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(silent_fetcher, fleet, 3, done)
            inner.start_soon(hog_and_flood, fleet, 4, vehicles, report, done)

    async def main() -> None:
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for v in vehicles:
                nursery.start_soon(v.run)
            if attacked:
                nursery.start_soon(attack, done)
            for v in vehicles:
                await v.done.wait()
            done.set()
            nursery.cancel_scope.cancel()  # the vehicles serve on until told to stop

    trio.run(main)
    return {"round_s": round_s(vehicles), "flood": report.get("flood", 0),
            "hog_streams": report.get("hog_streams", 0),
            "fetch_deadlines": sum(v.node.stats["fetch_deadline"] for v in vehicles)}


def round_s(vehicles: list[Vehicle]) -> float:
    return statistics.median(t.round_s for v in vehicles for t in v.timings.values()
                             if t.round >= 1 and t.round_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    setup_threads()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    clean, attacked = [], []
    for seed in range(args.repeats):
        clean.append(run(False, seed))
        attacked.append(run(True, seed))
        log(f"seed {seed}: clean {clean[-1]} attacked {attacked[-1]}")
    c = statistics.median(r["round_s"] for r in clean)
    a = statistics.median(r["round_s"] for r in attacked)
    print(json.dumps({"clean_round_s": round(c, 3), "attacked_round_s": round(a, 3),
                      "ratio": round(a / c, 3),
                      "flood_per_run": statistics.median(r["flood"] for r in attacked),
                      "fetch_deadlines": max(r["fetch_deadlines"] for r in attacked)}))


if __name__ == "__main__":
    main()
