"""Where a swarm round's time and bytes go, for 4, 8 and 16 vehicles over libp2p.

Each fleet runs the default round (30 local steps, 10% of the delta at 8 bits, weighted mean)
on 127.0.0.1 with an embedded chain. Per vehicle and round:
  train_s     its local training (the vehicles of one process take turns on this machine's
              cores, so a round lasts about vehicles x train_s; on the road they train at once)
  exchange_s  announcing and fetching the other vehicles' payloads, summed over fetches;
              split into fetch_slot_wait_s (queued for a fetch slot) and fetch_wire_s (asking
              peers), with fetch_deadlines (fetches that ran out of time)
  merge_s     merging the round's payloads (to commit, or to verify the commitment)
  commit_s    the commitment transaction, per round (only the committer sends one)
  round_s     from the round's start to its verified commitment
  bytes_sent / bytes_received: payload and announcement bytes (libp2p framing not counted)
Also reported: overhead_share = (exchange + merge + commit) / round_s, the share of a round not
spent training or waiting for slower vehicles to train.

Each figure is the median over ``--repeats`` runs of the fleet (default 3).

With ``--processes`` each vehicle is its own pair of processes (``swarmdrive sim
--processes``: anvil, mosquitto, a serve and a learn per vehicle), as on the road but sharing
this machine's cores; the figures come from each vehicle's round telemetry. In one process all
vehicles share one trio loop, so every fetch waits behind every other vehicle's traffic and
exchange grows about n^2 there: a simulator artefact, not a vehicle's cost. With
``--processes`` the figures also say where the exchange went, per vehicle and round: fetched
(payloads) and fetch_asked (peers asked for them), fetch_slot_wait_s, fetch_wire_s and
fetch_deadline as above, and the learner's CPU: cpu_s, of which train_cpu_s (its trainer) and
loop_cpu_s (its event loop: libp2p, gossip, the round engine); other_cpu_s = cpu_s -
train_cpu_s. docs/scaling.md reads them for 8 and 16 vehicles.

On one machine every process shares its cores, so each vehicle has less CPU the larger the
fleet, and an all-to-all exchange, n-1 payloads in and out per vehicle, costs the machine n^2:
its exchange grows ~4x from 8 to 16 vehicles before any protocol cost. ``--cpu-per-vehicle C``
gives each vehicle (its learner and its server) a cgroup with a quota of C cores, as a
vehicle's own hardware would, so that the figures show what grows with the fleet per vehicle;
vehicles x C must fit the machine (16 x 0.12 on two cores). ``--camera-fps`` sets how many
frames each simulated camera renders per second: the learner renders them, which a real
camera does not cost it.

Prints {"4": {...}, "8": {...}, "16": {...}} as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import log, setup_threads
from chain.ledger import ChainParams
from models.net import NetConfig
from sim.cpubudget import CpuBudget, CpuBudgetError
from sim.datasets import fleet_test_set
from sim.fleet import FleetConfig, make_fleet_data
from sim.netfleet import NetResult, run_swarm_p2p
from sim.procfleet import ProcessResult, run_process_fleet


def summarise(result: NetResult, rounds: int) -> dict[str, float]:
    # Round 0 includes connecting and the mesh forming; the steady state starts at round 1.
    timings = [t for ts in result.timings.values() for t in ts if t.round >= 1 and t.round_s]
    commits = [t.commit_s for t in timings if t.committed_by_me]

    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else 0.0

    out = {
        "train_s": mean([t.train_s for t in timings]),
        "exchange_s": mean([t.exchange_s for t in timings]),
        "merge_s": mean([t.merge_s for t in timings]),
        "commit_s": mean(commits),
        "round_s": mean([t.round_s for t in timings]),
        # Where exchange time goes, per vehicle and round: queueing for one of the vehicle's
        # fetch slots, and on the wire (answers, plus peers that never answered); fetches that
        # hit their deadline; and CPU (merges, payload checks) is merge_s.
        "fetch_slot_wait_s": mean([s.get("fetch_slot_wait_ms", 0) / 1000 / rounds
                                   for s in result.stats.values()]),
        "fetch_wire_s": mean([s.get("fetch_wire_ms", 0) / 1000 / rounds
                              for s in result.stats.values()]),
        "fetch_deadlines": mean([s.get("fetch_deadline", 0) / rounds
                                 for s in result.stats.values()]),
        "bytes_sent": mean([s.get("bytes_sent", 0) / rounds for s in result.stats.values()]),
        "bytes_received": mean([s.get("bytes_received", 0) / rounds
                                for s in result.stats.values()]),
        "rounds": rounds,
        "seconds": result.seconds,
    }
    overhead = out["exchange_s"] + out["merge_s"] + out["commit_s"]
    out["overhead_share"] = overhead / out["round_s"] if out["round_s"] else 0.0
    return {k: round(v, 4) for k, v in out.items()}


def summarise_processes(result: ProcessResult) -> dict[str, float]:
    """The same figures from the vehicles' round telemetry (steady state: round 1 on)."""
    reports = [m for m in result.round_reports if int(str(m["round"])) >= 1 and "train_s" in m]

    def mean(key: str, only: Callable[[dict[str, object]], bool] = lambda m: True) -> float:
        xs = [float(str(m[key])) for m in reports if only(m)]
        return statistics.fmean(xs) if xs else 0.0

    out = {k: mean(k) for k in ("train_s", "exchange_s", "merge_s", "round_s", "cpu_s",
                                  "train_cpu_s", "loop_cpu_s", "fetch_deadline", "fetched",
                                  "fetch_asked")}
    out["fetch_slot_wait_s"] = mean("fetch_slot_wait_ms") / 1000
    out["fetch_wire_s"] = mean("fetch_wire_ms") / 1000
    out["commit_s"] = mean("commit_s", lambda m: float(str(m["commit_s"])) > 0)
    # CPU: what the learner process used per round besides training (network, merge, chain).
    out["other_cpu_s"] = out["cpu_s"] - out["train_cpu_s"]
    out["overhead_share"] = ((out["exchange_s"] + out["merge_s"] + out["commit_s"])
                             / out["round_s"] if out["round_s"] else 0.0)
    out["reports"] = len(reports)
    out["seconds"] = result.seconds
    return {k: round(v, 4) for k, v in out.items()}


def run_processes(n: int, rounds: int, cpu_share: float, local_steps: int,
                  train_ahead: bool, cpu_per_vehicle: float | None,
                  camera_fps: float) -> dict[str, float]:
    cfg = FleetConfig(vehicles=n, rounds=rounds + 1, local_steps=local_steps)
    majority = n // 2 + 1
    params = ChainParams(majority, majority, 120, 20, 60)
    test = fleet_test_set(cfg.seed, 1, NetConfig().input_size)
    with tempfile.TemporaryDirectory(prefix="swarmdrive-round-") as tmp:
        result = run_process_fleet(cfg, test, Path(tmp), params, cpu_share=cpu_share,
                                   train_ahead=train_ahead, cpu_per_vehicle=cpu_per_vehicle,
                                   camera_fps=camera_fps)
    hashes = {str(v["model_hash"]) for v in result.vehicles.values()}
    return summarise_processes(result) | {"agree": float(hashes == {result.chain_model_hash})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--fleets", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--processes", action="store_true",
                   help="one serve and one learn process per vehicle (anvil, mosquitto)")
    p.add_argument("--cpu-share", type=float, default=0.5,
                   help="with --processes: each learner's training budget (training.cpu_share; "
                        "the vehicle's default 0.5 leaves the CPU free half the time, as a "
                        "vehicle's own cores would be)")
    p.add_argument("--local-steps", type=int, default=FleetConfig().local_steps,
                   help="with --processes: local steps per round")
    p.add_argument("--train-ahead", action=argparse.BooleanOptionalAction, default=True,
                   help="with --processes: train the next round while this one closes")
    p.add_argument("--camera-fps", type=float, default=5.0,
                   help="with --processes: frames each simulated camera renders per second; "
                        "the learner renders them, a cost a real camera does not put on a "
                        "vehicle's CPU (default %(default)s)")
    p.add_argument("--cpu-per-vehicle", type=float, metavar="CORES",
                   help="with --processes: each vehicle's two processes share a CPU quota of "
                        "CORES (a cgroup each; needs root), so that a vehicle has the same "
                        "compute in every fleet size, as on the road")
    args = p.parse_args()
    if args.cpu_per_vehicle is not None:
        if not args.processes:
            p.error("--cpu-per-vehicle needs --processes")
        try:
            with CpuBudget(args.cpu_per_vehicle):  # fail now, not after the first fleet
                pass
        except CpuBudgetError as e:
            p.error(f"--cpu-per-vehicle: {e}")
    setup_threads()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    out: dict[str, dict[str, float]] = {}
    for n in args.fleets:
        if args.processes:
            runs = [run_processes(n, args.rounds, args.cpu_share, args.local_steps,
                                  args.train_ahead, args.cpu_per_vehicle, args.camera_fps)
                    for _ in range(args.repeats)]
            for r in runs:
                log(f"{n} vehicles (processes): {r}")
            out[str(n)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            continue
        cfg = FleetConfig(vehicles=n, rounds=args.rounds)
        data = make_fleet_data(cfg)
        runs = []
        for _ in range(args.repeats):
            result = run_swarm_p2p(cfg, data)
            hashes = {v["model_hash"] for v in result.vehicles.values()}
            runs.append(summarise(result, args.rounds)
                        | {"agree": float(hashes == {result.chain_model_hash})})
            log(f"{n} vehicles: {runs[-1]}")
        out[str(n)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
