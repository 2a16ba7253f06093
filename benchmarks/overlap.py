"""Training never waits for the chain: a fleet of real processes on anvil mining a block every
``--block-time`` seconds, run twice: with ``training.train_ahead`` (the default: a vehicle
trains the next round's local steps while the last one is exchanged, committed and attested)
and without it (the vehicle idles from its announcement until the round is final).

Each run is a scenario with no events (``sim.director``). A vehicle's trainer is busy while
its training thread works, resting within its ``cpu_share`` budget included; the share is the
growth of ``trainer_busy_s`` between its round messages (telemetry-v1.md) over the time between
them, from its first final round to its last (start-up left out). Accuracy is the final on-chain
model's, as the vehicles serve it (ONNX Runtime) on the fleet-wide test set.

Prints {"train_ahead": {...}, "waiting": {...}, "busy_share_min", "accuracy_gap"} as its last
line, where each run has busy_share_min/mean, accuracy, round_s_median, contributions_mean
(per final round) and seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import log
from models.net import NetConfig
from sim.datasets import fleet_test_set
from sim.director import Director
from sim.scenario import ChainSpec, FleetSpec, Scenario


def busy_shares(round_reports: list[dict[str, Any]]) -> dict[int, float]:
    """Per vehicle: trainer-busy seconds over wall seconds between its first and last round
    messages."""
    by_vehicle: dict[int, list[dict[str, Any]]] = {}
    for m in round_reports:
        if "trainer_busy_s" in m:
            by_vehicle.setdefault(m["vehicle"], []).append(m)
    shares = {}
    for v, ms in by_vehicle.items():
        ms.sort(key=lambda m: m["ts"])
        if len(ms) >= 2 and ms[-1]["ts"] > ms[0]["ts"]:
            shares[v] = ((ms[-1]["trainer_busy_s"] - ms[0]["trainer_busy_s"])
                         / (ms[-1]["ts"] - ms[0]["ts"]))
    return shares


def run(args: argparse.Namespace, ahead: bool, root: Path) -> dict[str, Any]:
    sc = Scenario(name="overlap" if ahead else "waiting", baselines=False,
                  fleet=FleetSpec(vehicles=args.vehicles, rounds=args.rounds,
                                  local_steps=args.local_steps, cpu_share=args.cpu_share,
                                  train_ahead=ahead, seed=args.seed),
                  chain=ChainSpec(block_time_s=args.block_time))
    test = fleet_test_set(args.seed, 8, NetConfig().input_size)
    record = Director(sc, root, test, lambda line: log(f"{sc.name}: {line}")).run()
    if record.failure is not None or not record.final.get("all_serve_expected"):
        raise SystemExit(f"the {sc.name} run failed: {record.failure or record.final}")
    last = args.rounds - 1
    accuracy = [a["accuracy"] for a in record.accuracy if a["round"] == last]
    shares = busy_shares(record.round_reports)
    round_s = [m["round_s"] for m in record.round_reports if m.get("round_s")]
    out = {"busy_share_min": round(min(shares.values()), 3),
           "busy_share_mean": round(statistics.mean(shares.values()), 3),
           "accuracy": accuracy[0] if accuracy else None,
           "round_s_median": round(statistics.median(round_s), 2),
           "contributions_mean": round(statistics.mean(r["contributions"] for r in
                                                       record.round_reports), 2),
           "seconds": record.seconds}
    log(f"{sc.name}: {out}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vehicles", type=int, default=8)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--local-steps", type=int, default=30)
    p.add_argument("--block-time", type=float, default=2.0, help="anvil's seconds per block")
    p.add_argument("--cpu-share", type=float, default=1.0,
                   help="each learner's training budget (training.cpu_share)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ahead in (True, False):
            name = "train_ahead" if ahead else "waiting"
            result[name] = run(args, ahead, Path(tmp) / name)
    a, w = result["train_ahead"], result["waiting"]
    result["busy_share_min"] = a["busy_share_min"]
    if a["accuracy"] is not None and w["accuracy"] is not None:
        result["accuracy_gap"] = round(w["accuracy"] - a["accuracy"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
