"""Robust merging under attack: each rule's accuracy with 0 and with 2 of 8 vehicles attacking.

Attacks (sim/attacks.py): sign flip (-5x own delta), scaled Gaussian noise (10x own norm),
"a little is enough", sample inflation (the sign flip claiming 2**32 - 1 samples) and a
malicious committer (honest deltas, junk model committed in its slot, never attested). The
attackers are vehicles 0 and 1, whose towns other vehicles also drive. A shorter schedule than
benchmarks/learning.py keeps the 36 runs affordable (~45 min on 2 cores). Deltas are dense
(float32): coordinate-wise rules need every vehicle to send every coordinate (see
``models.merge.COORDINATE_RULES``).

Prints {"rules": {rule: {"clean", "sign_flip", "noise", "alie", "inflate", "committer",
"max_drop"}}, "worst_robust_rule", "worst_robust_max_drop",
"best_robust_rule", "best_robust_max_drop", "mean_max_drop"} as its last line.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from benchmarks.common import log, setup_threads
from models.codec import DENSE
from models.merge import RULES, MergeConfig
from sim.attacks import ATTACKS
from sim.fleet import FleetConfig, make_fleet_data, run_swarm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--local-steps", type=int, default=5)
    p.add_argument("--rules", nargs="+", default=list(RULES))
    args = p.parse_args()
    setup_threads()
    t0 = time.perf_counter()
    base = FleetConfig(vehicles=8, rounds=args.rounds, local_steps=args.local_steps, codec=DENSE)
    data = make_fleet_data(base)
    report: dict[str, dict[str, float]] = {}
    for rule in args.rules:
        row: dict[str, float] = {}
        for attack in ("clean", *ATTACKS):
            f = 0 if attack == "clean" else 2
            cfg = replace(base, merge=MergeConfig(rule, byzantine=2), attackers=f,
                          attack=attack if f else base.attack)
            row[attack] = round(run_swarm(cfg, data).accuracy, 4)
            log(f"{rule} {attack}: {row[attack]}")
        row["max_drop"] = round(max(row["clean"] - row[a] for a in ATTACKS) * 100, 2)
        report[rule] = row
    robust = {r: v for r, v in report.items() if r != "mean"}
    best = min(robust, key=lambda r: (robust[r]["max_drop"], -robust[r]["clean"]))
    worst = max(robust, key=lambda r: robust[r]["max_drop"])
    print(json.dumps({
        "rules": report,
        "best_robust_rule": best,
        "best_robust_max_drop": report[best]["max_drop"],
        "worst_robust_rule": worst,
        "worst_robust_max_drop": report[worst]["max_drop"],
        "mean_max_drop": report["mean"]["max_drop"] if "mean" in report else None,
        "seconds": round(time.perf_counter() - t0),
    }))


if __name__ == "__main__":
    main()
