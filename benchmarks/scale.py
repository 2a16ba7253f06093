"""A fleet of real processes at scale: ``--vehicles`` (default 32) vehicles, each a ``serve`` and
a ``learn`` process with its own key, libp2p host and simulated cameras, on one anvil and one
mosquitto, run ``--rounds`` (default 5) rounds with a small training budget. Do they all end on
the chain's hash, and what does each process hold in memory once the last round is installed?
``--model detector`` runs the fleet on the frame detector (whole frames in each learner's buffer).

Memory per process, from /proc/PID/smaps_rollup: ``rss`` counts shared library pages (torch,
ONNX Runtime) in full in every process; ``pss`` splits them between the processes that map
them, so the fleet's ``pss`` adds up to what it takes from the machine; ``uss`` is private.

Prints {"vehicles", "rounds", "agree", "seconds", "round_s_median", "learn_mb": {...},
"serve_mb": {...}, "fleet_pss_gb"} as its last line (per role: median and max of each figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import log
from chain.ledger import ChainParams
from sim.fleet import FleetConfig, fleet_test_data
from sim.procfleet import run_process_fleet


def per_role(memory: dict[int, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("rss", "pss", "uss"):
        xs = [m[key] for m in memory.values()]
        out[f"{key}_median"] = round(statistics.median(xs), 1)
        out[f"{key}_max"] = round(max(xs), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vehicles", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--local-steps", type=int, default=5)
    p.add_argument("--cpu-share", type=float, default=0.25,
                   help="each learner's training budget: 32 learners share two cores here")
    p.add_argument("--camera-fps", type=float, default=1.0,
                   help="frames each simulated camera keeps per second (rendering costs CPU)")
    p.add_argument("--model", choices=("classifier", "detector"), default="classifier")
    args = p.parse_args()
    torch.set_num_threads(1)
    n = args.vehicles
    cfg = FleetConfig(vehicles=n, rounds=args.rounds, local_steps=args.local_steps,
                      test_frames_per_domain=1, model=args.model).with_family_recipe()
    if args.model == "classifier":  # a small budget: half the recipe's batch
        cfg = replace(cfg, batch_size=32)
    majority = n // 2 + 1
    # Generous windows: 2n processes share two cores, so a round is slow here.
    params = ChainParams(majority, majority, 600, 120, 300)
    test = fleet_test_data(cfg)
    with tempfile.TemporaryDirectory(prefix="swarmdrive-scale-") as tmp:
        result = run_process_fleet(
            cfg, test, Path(tmp), params, cpu_share=args.cpu_share, timeout_s=3 * 3600,
            # Training ahead keeps every trainer busy: right on a vehicle's own cores, but 32
            # of them would starve the network and the chain of this machine's two.
            train_ahead=False, camera_fps=args.camera_fps,
            progress=lambda f: log(f"round {f.round} final: {len(f.signers)} signers"))
    hashes = {str(v["model_hash"]) for v in result.vehicles.values()}
    served = {str(v["served_model_hash"]) for v in result.vehicles.values()}
    round_s = [float(str(m["round_s"])) for m in result.round_reports
               if int(str(m["round"])) >= 1 and m.get("round_s")]
    out: dict[str, Any] = {
        "vehicles": n, "rounds": args.rounds, "model": args.model,
        "agree": hashes == served == {result.chain_model_hash},
        "seconds": round(result.seconds, 1),
        "round_s_median": round(statistics.median(round_s), 2) if round_s else None,
        "learn_mb": per_role(result.memory["learn"]),
        "serve_mb": per_role(result.memory["serve"]),
        "fleet_pss_gb": round(sum(m["pss"] for role in result.memory.values()
                                  for m in role.values()) / 1024, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
