"""The fleet learns together: swarm (dense and compressed) vs each vehicle alone vs central.

8 vehicles with 8 distinct (town, weathers) profiles, the fleet-wide test set (every town under
every weather). ``--model classifier`` (crops, scored by accuracy: keys ``*_acc``) or
``--model detector`` (whole frames, scored by COCO mAP@0.5: keys ``*_map50``).

Same data and budget for everyone: a vehicle alone trains rounds x local_steps steps on its own
data; the swarm's vehicles train the same steps and merge every local_steps; the central model
trains the same number of steps on the pooled data with the fleet's batch (vehicles x batch),
i.e. the fleet's total compute. All at the family's rate (models/recipe.py); ``--lr`` sets the
swarm's alone (the detector's swarm at 2-step rounds learns faster at 8e-3: docs/detector.md).
``--density`` and ``--bits`` set the compressed swarm's codec (2% at 4 bits by default);
``--bf16`` trains every arm in bfloat16.

Prints {"local_acc_mean", "local_acc_min", "central_acc", "swarm_dense_acc",
"swarm_compressed_acc", "dense_bytes_per_round", "compressed_bytes_per_round",
"compression_ratio", ...} as its last line (``map50`` for ``acc`` with the detector).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from benchmarks.common import log, setup_threads
from models.codec import DENSE, CodecConfig
from sim.fleet import FleetConfig, RoundStats, make_fleet_data, run_central, run_local, run_swarm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    # Many short rounds: what top-k at 2% needs to match dense (20 x 30 loses 6 points:
    # benchmarks/frontier.py).
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--local-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=("classifier", "detector"), default="classifier")
    p.add_argument("--lr", type=float, default=None,
                   help="the swarm's peak rate (default: the family's; the baselines keep it)")
    p.add_argument("--frames", type=int, default=60, help="each vehicle's frames per weather")
    p.add_argument("--density", type=float, default=CodecConfig().density,
                   help="the compressed swarm's share of each delta (default %(default)s)")
    p.add_argument("--bits", type=int, default=CodecConfig().bits,
                   help="the compressed swarm's bits per value: 4, 8 or 32 (default %(default)s)")
    p.add_argument("--bf16", action="store_true",
                   help="train every arm in bfloat16 (1.5x faster on a CPU with AVX512-BF16)")
    args = p.parse_args()
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr {args.lr}: a rate must be positive")
    try:
        compressed = CodecConfig(density=args.density, bits=args.bits)
    except ValueError as e:
        p.error(str(e))
    setup_threads()
    t0 = time.perf_counter()
    cfg = FleetConfig(vehicles=8, rounds=args.rounds, local_steps=args.local_steps, seed=args.seed,
                      frames_per_weather=args.frames, model=args.model,
                      bf16=args.bf16).with_family_recipe()
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr)
    m = "acc" if args.model == "classifier" else "map50"
    data = make_fleet_data(cfg)
    log(f"profiles: {', '.join(p.name for p in data.profiles)}; test set {len(data.test)}")
    every = max(1, cfg.rounds // 10)

    def progress(st: RoundStats) -> None:
        if (st.round + 1) % every == 0:
            log(f"round {st.round + 1}/{cfg.rounds} loss {st.loss:.3f} "
                f"bytes {st.payload_bytes:.0f}")

    dense = run_swarm(replace(cfg, codec=DENSE), data, progress)
    log(f"swarm dense: {dense.accuracy:.4f} in {dense.seconds:.0f} s")
    comp = run_swarm(replace(cfg, codec=compressed), data, progress)
    log(f"swarm compressed: {comp.accuracy:.4f} in {comp.seconds:.0f} s")
    local = run_local(cfg, data)
    log(f"local: {[round(a, 4) for a in local]}")
    central = run_central(cfg, data)
    log(f"central: {central:.4f}")
    fp32_bytes = 4 * sum(t.numel() for t in comp.model.state_dict().values())
    print(json.dumps({
        "model": args.model,
        f"local_{m}_mean": round(sum(local) / len(local), 4),
        f"local_{m}_min": round(min(local), 4),
        f"central_{m}": round(central, 4),
        f"swarm_dense_{m}": round(dense.accuracy, 4),
        f"swarm_compressed_{m}": round(comp.accuracy, 4),
        "dense_bytes_per_round": fp32_bytes,
        "compressed_bytes_per_round": round(comp.bytes_per_round),
        "compression_ratio": round(fp32_bytes / comp.bytes_per_round, 1),
        "dense_payload_bytes_per_round": round(dense.bytes_per_round),  # fp32 through zstd
        "rounds": cfg.rounds, "local_steps": cfg.local_steps, "batch_size": cfg.batch_size,
        "swarm_lr": cfg.lr, "baseline_lr": cfg.train_config(solo=True).lr, "bf16": cfg.bf16,
        "codec": {"density": compressed.density, "bits": compressed.bits},
        "seconds": round(time.perf_counter() - t0),
    }))


if __name__ == "__main__":
    main()
