"""``swarmdrive sim``: a whole fleet learning together on one machine.

``--transport libp2p`` (the default) runs every vehicle's daemon logic: its own libp2p host on
127.0.0.1, gossip, fetches and an account on an embedded chain. ``--transport memory`` passes the
same payloads as bytes in one loop: the reference the libp2p fleet must match bit for bit.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import (
    UsageError,
    add_command,
    add_precision,
    check_output_dir,
    float_range,
    int_range,
    non_negative_int,
    positive_int,
)

if TYPE_CHECKING:
    from models.family import Net
    from sim.fleet import FleetConfig, FleetData, RoundStats
    from sim.netfleet import RoundReport

TRANSPORTS = ("libp2p", "memory")
# Literals, so that --help needs no numpy; tests/sim/test_commands.py holds them (and the
# defaults below) equal to models.merge.RULES, sim.attacks.ATTACKS and FleetConfig().
RULE_NAMES = ("mean", "median", "trimmed_mean", "krum", "geomed", "cclip")
ATTACK_NAMES = ("sign_flip", "noise", "alie", "inflate", "committer")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "sim", "simulate a fleet learning together",
                    "Run a whole fleet on this machine: every vehicle trains on its own drives, "
                    "exchanges compressed deltas and verifies every round.")
    p.add_argument("--transport", choices=TRANSPORTS, default="libp2p",
                   help="libp2p: a host per vehicle on 127.0.0.1 and an embedded chain; "
                        "memory: payloads as bytes in one loop")
    p.add_argument("--processes", action="store_true",
                   help="run each vehicle as its own 'swarmdrive serve' and 'swarmdrive learn' "
                        "processes, as on the road, with anvil and mosquitto (libp2p only; "
                        "vehicles learn from their simulated cameras)")
    p.add_argument("--vehicles", type=int_range(2, 64), default=8, help="vehicles in the fleet")
    p.add_argument("--rounds", type=int_range(1, 100_000), default=20, help="swarm rounds")
    p.add_argument("--local-steps", type=int_range(1, 100_000), default=30,
                   help="training steps per vehicle and round")
    p.add_argument("--model", choices=("classifier", "detector"), default="classifier",
                   help="what the fleet learns: the crop classifier (scored by accuracy) or "
                        "the frame detector (scored by COCO mAP@0.5)")
    p.add_argument("--batch-size", type=int_range(1, 4096),
                   help="crops (classifier, default 64) or frames (detector, default 16) a step")
    p.add_argument("--frames", type=int_range(2, 10_000), default=60,
                   help="frames each vehicle drives per weather of its profile")
    p.add_argument("--compression", action=argparse.BooleanOptionalAction, default=True,
                   help="top-k + quantisation + zstd (--no-compression: dense float32)")
    p.add_argument("--density", type=float_range(0.0, 1.0, lo_open=True), default=0.1,
                   help="fraction of weights sent per round")
    p.add_argument("--bits", type=int, choices=(4, 8, 32), default=8,
                   help="bits per sent weight")
    p.add_argument("--rule", choices=RULE_NAMES, default="mean", help="merge rule")
    p.add_argument("--byzantine", type=non_negative_int, default=None,
                   help="attackers the rule tolerates (default: --attackers)")
    p.add_argument("--attackers", type=non_negative_int, default=0,
                   help="Byzantine vehicles (memory transport)")
    p.add_argument("--attack", choices=ATTACK_NAMES, default="sign_flip",
                   help="what the attackers send")
    p.add_argument("--baselines", action="store_true",
                   help="also train each vehicle alone and one central model")
    p.add_argument("--eval-every", type=positive_int, default=5,
                   help="rounds between accuracy reports (memory transport)")
    p.add_argument("--min-peers", type=non_negative_int, default=0,
                   help="contributions a round needs (libp2p; 0: a majority)")
    p.add_argument("--round-timeout", type=int_range(1, 86_400), default=120, metavar="S",
                   help="seconds the first committer waits for connected but silent vehicles "
                        "(libp2p; later committers get 20 s each)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of drives and weights")
    p.add_argument("--threads", type=int_range(1, 256), default=2, help="torch CPU threads")
    add_precision(p)
    p.add_argument("--out", type=Path, help="folder for result.json and the final model.pt")
    p.set_defaults(run=run)


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    """The fleet the arguments describe, or ``UsageError`` naming what does not fit."""
    from models.codec import DENSE, CodecConfig
    from models.merge import COORDINATE_RULES, MIN_DENSITY_FOR_COORDINATE_RULES, MergeConfig
    from models.train import use_bf16
    from sim.fleet import FleetConfig

    if args.processes and (args.transport != "libp2p" or args.baselines):
        raise UsageError("--processes runs the libp2p transport, without --baselines")
    if args.transport == "libp2p" and args.attackers:
        raise UsageError("--attackers runs on --transport memory only: its attackers see every "
                         "honest delta, which no vehicle on the network can")
    if not 0 <= args.min_peers <= args.vehicles:
        raise UsageError(f"--min-peers {args.min_peers} must be between 0 and --vehicles "
                         f"{args.vehicles}")
    if not 0 <= args.attackers < args.vehicles:
        raise UsageError(f"--attackers {args.attackers} must be at least 0 and below "
                         f"--vehicles {args.vehicles}")
    try:
        codec = CodecConfig(args.density, args.bits) if args.compression else DENSE
    except ValueError as e:
        raise UsageError(f"--density/--bits: {e}") from None
    if args.rule in COORDINATE_RULES and codec.density < MIN_DENSITY_FOR_COORDINATE_RULES:
        raise UsageError(f"--rule {args.rule} needs dense contributions: at --density "
                         f"{codec.density} most weights are sent by under half the vehicles, so "
                         "their median is zero; use --rule krum, geomed or cclip, or "
                         "--no-compression")
    byz = args.attackers if args.byzantine is None else args.byzantine
    merge = MergeConfig(args.rule, byzantine=byz)
    # The fewest contributions a round may merge: every vehicle in memory, min_peers over libp2p.
    fewest = args.vehicles if args.transport == "memory" else \
        args.min_peers or args.vehicles // 2 + 1
    problem = merge.problem_with(fewest)
    if problem:
        raise UsageError(f"--rule {args.rule} --byzantine {byz}: {problem}, and a round may "
                         f"have only {fewest}")
    cfg = FleetConfig(vehicles=args.vehicles, rounds=args.rounds, local_steps=args.local_steps,
                      frames_per_weather=args.frames, codec=codec, merge=merge,
                      attackers=args.attackers, attack=args.attack, seed=args.seed,
                      model=args.model, bf16=use_bf16(args.precision)).with_family_recipe()
    return replace(cfg, batch_size=args.batch_size) if args.batch_size else cfg


METRIC_NAMES = {"accuracy": "accuracy", "map50": "mAP@0.5"}


def show(st: RoundStats, rounds: int, metric: str) -> None:
    acc = f" {METRIC_NAMES[metric]} {st.accuracy:.4f}" if st.accuracy is not None else ""
    print(f"round {st.round + 1}/{rounds} loss {st.loss:.4f} sent {st.payload_bytes / 1e3:.1f} kB"
          f"/vehicle rejected {st.rejected}{acc} model {st.model_hash[:12]}", file=sys.stderr,
          flush=True)


def show_net(r: RoundReport, rounds: int, metric: str) -> None:
    acc = f" {METRIC_NAMES[metric]} {r.accuracy:.4f}" if r.accuracy is not None else ""
    print(f"round {r.round + 1}/{rounds} committed by {r.committer[:10]} with {r.contributions} "
          f"contributions, model {r.model_hash[:12]}{acc} at {r.seconds:.1f} s",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.out:  # first: the config may warn (bf16 emulated), and a bad --out ends the run
        check_output_dir(args.out)
    cfg = fleet_config(args)
    import torch

    from models.atomic import atomic_write_bytes
    from models.checkpoint import save_checkpoint
    from models.classes import CLASSES
    from sim.fleet import make_fleet_data, run_central, run_local

    torch.set_num_threads(args.threads)
    if args.processes:
        return run_processes(args, cfg)
    print(f"building the drives of {cfg.vehicles} vehicles ({cfg.frames_per_weather} frames per "
          "weather each) and the fleet-wide test set", file=sys.stderr, flush=True)
    data = make_fleet_data(cfg)
    for i, (p, d) in enumerate(zip(data.profiles, data.train, strict=True)):
        role = " (attacker)" if i < cfg.attackers else ""
        unit = "frames" if cfg.model == "detector" else "crops"
        print(f"vehicle {i}: {p.name}, {len(d)} {unit}{role}", file=sys.stderr)
    # *_acc figures are the model's metric: accuracy, or mAP@0.5 for the detector.
    summary: dict[str, object] = {"transport": args.transport, "model": cfg.model,
                                  "metric": cfg.family.metric, "config": asdict(cfg),
                                  "profiles": [p.name for p in data.profiles]}
    if args.transport == "libp2p":
        model = run_libp2p(args, cfg, data, summary)
    else:
        model = run_memory(args, cfg, data, summary)
    if args.baselines:
        print(f"baselines: each vehicle alone for {cfg.total_steps} steps", file=sys.stderr,
              flush=True)
        local = run_local(cfg, data)
        print("baselines: one central model on every vehicle's data", file=sys.stderr, flush=True)
        summary.update(local_acc=local, local_acc_mean=sum(local) / len(local),
                       local_acc_min=min(local), central_acc=run_central(cfg, data))
    if args.out:
        atomic_write_bytes(args.out / "result.json", json.dumps(summary, indent=1).encode())
        save_checkpoint(args.out / "model.pt", model, CLASSES,
                        meta={"source": "swarmdrive sim", "model_hash": summary["model_hash"]})
    print(json.dumps({k: v for k, v in summary.items()
                      if k not in ("rounds", "config", "timings", "stats", "vehicles")}))
    return 0


def run_processes(args: argparse.Namespace, cfg: FleetConfig) -> int:
    import tempfile

    from chain.ledger import ChainParams
    from models.atomic import atomic_write_bytes
    from models.checkpoint import save_checkpoint
    from models.classes import CLASSES
    from sim.fleet import fleet_test_data
    from sim.procfleet import run_process_fleet

    majority = cfg.vehicles // 2 + 1
    params = ChainParams(args.min_peers or majority, majority, args.round_timeout, 20, 60)
    test = fleet_test_data(cfg)
    with tempfile.TemporaryDirectory(prefix="swarmdrive-fleet-") as tmp:
        root = args.out / "fleet" if args.out else Path(tmp)
        print(f"starting anvil, mosquitto and {cfg.vehicles} vehicles (serve + learn each) "
              f"under {root}", file=sys.stderr, flush=True)
        r = run_process_fleet(cfg, test, root, params, progress=lambda f: print(
            f"round {f.round + 1}/{cfg.rounds} final with {len(f.signers)} attestations, "
            f"model {f.model_hash.hex()[:12]}", file=sys.stderr, flush=True))
    hashes = {str(v["model_hash"]) for v in r.vehicles.values()}
    accs = [float(v["accuracy"]) for v in r.vehicles.values()]  # type: ignore[arg-type]
    agree = hashes == {r.chain_model_hash}
    summary: dict[str, object] = {
        "transport": "processes", "model": cfg.model, "metric": cfg.family.metric,
        "config": asdict(cfg), "vehicles": r.vehicles,
        "chain_model_hash": r.chain_model_hash, "all_vehicles_match_chain": agree,
        "swarm_acc": min(accs), "model_hash": r.chain_model_hash, "contract": r.contract,
        "seconds": round(r.seconds, 1), "rounds": r.rounds, "telemetry": r.telemetry}
    for vehicle, topics in r.telemetry.items():
        print(f"telemetry from {vehicle[:10]}: " + ", ".join(f"{n} {leaf}" for leaf, n in
                                                             topics.items()), file=sys.stderr)
    if args.out:
        atomic_write_bytes(args.out / "result.json", json.dumps(summary, indent=1).encode())
        save_checkpoint(args.out / "model.pt", r.model, CLASSES,
                        meta={"source": "swarmdrive sim --processes",
                              "model_hash": r.chain_model_hash})
    print(json.dumps({k: v for k, v in summary.items()
                      if k not in ("rounds", "config", "vehicles", "telemetry")}))
    return 0


def run_memory(args: argparse.Namespace, cfg: FleetConfig, data: FleetData,
               summary: dict[str, object]) -> Net:
    from sim.fleet import run_swarm

    result = run_swarm(cfg, data, progress=lambda st: show(st, cfg.rounds, cfg.family.metric),
                       eval_every=args.eval_every)
    summary.update(swarm_acc=result.accuracy, model_hash=result.model_hash,
                   bytes_per_round=result.bytes_per_round, seconds=round(result.seconds, 1),
                   rounds=[asdict(r) for r in result.rounds])
    return result.model


def run_libp2p(args: argparse.Namespace, cfg: FleetConfig, data: FleetData,
               summary: dict[str, object]) -> Net:
    # Dials to peers that are not listening yet are expected while the fleet starts; our own
    # node logs every failure that matters, so libp2p's error lines would only be noise.
    from sim.netfleet import NetFleetConfig, run_swarm_p2p

    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    net = NetFleetConfig(min_peers=args.min_peers, round_timeout=args.round_timeout)
    result = run_swarm_p2p(cfg, data, net, progress=lambda r: show_net(r, cfg.rounds,
                                                                  cfg.family.metric),
                           evaluate_rounds=True)
    hashes = {v["model_hash"] for v in result.vehicles.values()}
    accs = [float(v["accuracy"]) for v in result.vehicles.values()]  # type: ignore[arg-type]
    agree = hashes == {result.chain_model_hash}
    summary.update(
        vehicles=result.vehicles, chain_model_hash=result.chain_model_hash,
        all_vehicles_match_chain=agree, swarm_acc=min(accs),
        model_hash=result.chain_model_hash, contract=result.contract,
        seconds=round(result.seconds, 1), rounds=[asdict(r) for r in result.rounds],
        stats=result.stats,
        timings={a: [asdict(t) for t in ts] for a, ts in result.timings.items()})
    if not agree:
        print(f"swarmdrive: warning: vehicles ended with {len(hashes)} different models; the "
              f"chain names {result.chain_model_hash[:12]}", file=sys.stderr)
    return result.model
