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
``--bf16`` trains every arm in bfloat16 (refused on a CPU that would emulate it, ~10x slower
than float32). ``--fleet-momentum`` has the dense swarm's vehicles follow
the merge's momentum (agent/swarm/learner.py; dense deltas only: the compressed swarm trains
without it). ``--lookahead L`` has the compressed swarm's vehicles take their steps L rounds of
the fleet's trend ahead (agent/swarm/learner.py).

A long run can be split: ``--arms`` runs some of the four arms, and ``--results FILE`` keeps
each arm's figures as soon as it ends, with the settings they depend on; a later run with the
same file runs only the arms still missing. Each arm is seeded on its own, so the figures are
those of one run. The baselines do not depend on how the swarm trains (``--lr``,
``--fleet-momentum``, ``--lookahead``, the codec), so a run that changes only that reuses them.

Prints {"local_acc_mean", "local_acc_min", "central_acc", "swarm_dense_acc",
"swarm_compressed_acc", "dense_bytes_per_round", "compressed_bytes_per_round",
"compression_ratio", ...} as its last line (``map50`` for ``acc`` with the detector), or the
figures so far and ``"missing"`` arms.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from agent.commands.args import OutputPathError, check_output_file
from benchmarks.common import cpu, log, setup_threads
from models.atomic import atomic_write_bytes
from models.codec import DENSE, CodecConfig
from models.layout import ModelLayout
from models.train import native_bf16
from sim.fleet import (
    FleetConfig,
    FleetData,
    RoundStats,
    make_fleet_data,
    run_central,
    run_local,
    run_swarm,
)

ARMS = ("dense", "compressed", "local", "central")
# Settings the baselines (each vehicle alone, central) never read: how the swarm trains and
# merges. A run that changes only these reuses a file's baselines.
SWARM_ONLY = frozenset({"lr", "codec", "merge", "attackers", "attack", "fleet_momentum",
                        "lookahead", "compressed"})


@dataclass(frozen=True)
class Arm:
    """What one arm measured: its model's score (each vehicle's, for ``local``)."""
    scores: list[float]
    seconds: float
    bytes_per_round: float = 0.0  # what each swarm vehicle sent
    cpu: str = ""  # the CPU it ran on: parts of a run may run on different machines
    settings: dict[str, object] = field(default_factory=dict)  # those its figures depend on


def arm_settings(arm: str, settings: dict[str, object]) -> dict[str, object]:
    """The part of a run's ``settings`` that ``arm``'s figures depend on."""
    unread: set[str]
    if arm in ("local", "central"):
        # Without their own rate (solo_lr) the baselines train at the swarm's.
        unread = set(SWARM_ONLY) - ({"lr"} if settings.get("solo_lr") is None else set())
    else:  # each swarm arm trains with its own codec; fleet momentum is the dense arm's alone,
        # lookahead the compressed arm's
        unread = ({"codec", "compressed", "lookahead"} if arm == "dense"
                  else {"codec", "fleet_momentum"})
    return {k: v for k, v in settings.items() if k not in unread}


def run_arm(arm: str, cfg: FleetConfig, compressed: CodecConfig, data: FleetData) -> Arm:
    """One arm, from its own seeds: its figures do not depend on the arms run before it."""
    t0 = time.perf_counter()
    every = max(1, cfg.rounds // 10)

    def progress(st: RoundStats) -> None:
        if (st.round + 1) % every == 0:
            log(f"{arm}: round {st.round + 1}/{cfg.rounds} loss {st.loss:.3f} "
                f"bytes {st.payload_bytes:.0f}")

    sent = 0.0
    if arm in ("dense", "compressed"):
        # Fleet momentum reads the round's step from the payload: a sparse one is not it.
        arm_cfg = (replace(cfg, codec=DENSE, lookahead=0.0) if arm == "dense"
                   else replace(cfg, codec=compressed, fleet_momentum=False))
        swarm = run_swarm(arm_cfg, data, progress)
        scores, sent = [swarm.accuracy], swarm.bytes_per_round
    elif arm == "local":
        scores = run_local(cfg, data)
    else:
        scores = [run_central(cfg, data)]
    out = Arm(scores, time.perf_counter() - t0, sent, str(cpu()["model"]))
    log(f"{arm}: {json.dumps(asdict(out))}")
    return out


def load_results(path: Path, settings: dict[str, object]) -> tuple[dict[str, Arm], dict[str, Arm]]:
    """The arms in ``path`` run with ``settings`` (those each depends on), and those run with
    other settings (both empty if the file does not exist yet)."""
    if not path.exists():
        return {}, {}
    same: dict[str, Arm] = {}
    other: dict[str, Arm] = {}
    try:
        saved = json.loads(path.read_text())
        shared = saved.get("settings")  # a file from before each arm kept its own
        for arm, record in saved["arms"].items():
            if arm not in ARMS:
                continue
            ran = {**record}
            # A file from before --fleet-momentum or --lookahead ran without them.
            ran["settings"] = arm_settings(arm, {"fleet_momentum": False, "lookahead": 0.0,
                                                 **ran.get("settings", shared)})
            found = Arm(**ran)
            (same if found.settings == arm_settings(arm, settings) else other)[arm] = found
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"--results {path}: not a results file of this benchmark ({e})") from None
    return same, other


def differing(name: str, arm: Arm, settings: dict[str, object]) -> list[str]:
    """The settings ``arm`` depends on that differ between its run and this one."""
    now = arm_settings(name, settings)
    return sorted(k for k in now.keys() | arm.settings.keys() if arm.settings.get(k) != now.get(k))


def summary(arms: dict[str, Arm], cfg: FleetConfig, compressed: CodecConfig,
            metric: str) -> dict[str, object]:
    """The benchmark's figures from those of the arms run so far."""
    fp32_bytes = 4 * ModelLayout.of(cfg.family.new_model().state_dict()).size
    out: dict[str, object] = {"model": cfg.model}
    if "local" in arms:
        local = arms["local"].scores
        out[f"local_{metric}_mean"] = round(sum(local) / len(local), 4)
        out[f"local_{metric}_min"] = round(min(local), 4)
    for arm, key in (("central", "central"), ("dense", "swarm_dense"),
                     ("compressed", "swarm_compressed")):
        if arm in arms:
            out[f"{key}_{metric}"] = round(arms[arm].scores[0], 4)
    out["dense_bytes_per_round"] = fp32_bytes
    if "compressed" in arms:
        out["compressed_bytes_per_round"] = round(arms["compressed"].bytes_per_round)
        out["compression_ratio"] = round(fp32_bytes / arms["compressed"].bytes_per_round, 1)
    if "dense" in arms:  # fp32 through zstd
        out["dense_payload_bytes_per_round"] = round(arms["dense"].bytes_per_round)
    out.update({
        "rounds": cfg.rounds, "local_steps": cfg.local_steps, "batch_size": cfg.batch_size,
        "swarm_lr": cfg.lr, "baseline_lr": cfg.train_config(solo=True).lr, "bf16": cfg.bf16,
        "fleet_momentum": cfg.fleet_momentum, "lookahead": cfg.lookahead,
        "codec": {"density": compressed.density, "bits": compressed.bits},
        "seconds": round(sum(a.seconds for a in arms.values())),
        "cpus": sorted({a.cpu for a in arms.values()} - {""}),  # "": not recorded
    })
    missing = [a for a in ARMS if a not in arms]
    if missing:
        out["missing"] = missing
    return out


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
                   help="train every arm in bfloat16 (1.5x faster on a CPU with AVX512-BF16 or "
                        "AMX; refused elsewhere)")
    p.add_argument("--fleet-momentum", action="store_true",
                   help="the dense swarm's vehicles follow the merge's momentum "
                        "(agent/swarm/learner.py); the compressed swarm trains without it")
    p.add_argument("--lookahead", type=float, default=0.0,
                   help="the compressed swarm's vehicles take their steps this many rounds of the "
                        "fleet's trend ahead (agent/swarm/learner.py; default %(default)s)")
    p.add_argument("--arms", default=",".join(ARMS),
                   help="the arms to run, comma-separated (default: %(default)s)")
    p.add_argument("--results", type=Path, default=None,
                   help="a JSON file that keeps each arm's figures; arms already in it for the "
                        "same settings are not run again")
    args = p.parse_args()
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr {args.lr}: a rate must be positive")
    if args.rounds < 1 or args.local_steps < 1 or args.frames < 1:
        p.error("--rounds, --local-steps and --frames must be at least 1")
    if not 0 <= args.lookahead < float("inf"):
        p.error(f"--lookahead {args.lookahead}: rounds ahead must be zero or more, and finite")
    if args.bf16 and not native_bf16():  # an hour's run would take ten: never what one wants
        p.error("--bf16: this CPU has neither AVX512-BF16 nor AMX, so torch would emulate "
                "bfloat16, ~10x slower than float32; leave out --bf16")
    wanted = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(wanted) - set(ARMS))
    if unknown or not wanted:
        p.error(f"--arms {args.arms}: name some of {', '.join(ARMS)}")
    try:
        compressed = CodecConfig(density=args.density, bits=args.bits)
    except ValueError as e:
        p.error(str(e))
    setup_threads()
    cfg = FleetConfig(vehicles=8, rounds=args.rounds, local_steps=args.local_steps, seed=args.seed,
                      frames_per_weather=args.frames, model=args.model,
                      bf16=args.bf16, fleet_momentum=args.fleet_momentum,
                      lookahead=args.lookahead).with_family_recipe()
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr)
    # Threads change floating point sums (and the figures by a point or more): part of a run.
    settings: dict[str, object] = {**asdict(cfg), "compressed": asdict(compressed),
                                   "threads": torch.get_num_threads()}
    settings = json.loads(json.dumps(settings))  # as it reads back from the file
    if args.results:
        try:  # before any arm runs: an hour's figures must have somewhere to go
            check_output_file(args.results, "--results")
        except OutputPathError as e:
            p.error(str(e))
    arms, other = load_results(args.results, settings) if args.results else ({}, {})
    for arm, found in other.items():
        differ = ", ".join(differing(arm, found, settings))
        if arm in wanted:  # running it again would overwrite an hour's figures
            raise SystemExit(f"--results {args.results}: holds {arm} figures for other settings "
                             f"(differ in {differ}); name another file or leave out --arms {arm}")
        log(f"{arm} in {args.results}: other settings (differ in {differ}); kept there, "
            "left out of these figures")
    todo = [a for a in ARMS if a in wanted and a not in arms]
    if todo:
        data = make_fleet_data(cfg)
        log(f"profiles: {', '.join(p.name for p in data.profiles)}; test set {len(data.test)}")
    for arm in todo:
        arms[arm] = replace(run_arm(arm, cfg, compressed, data),
                            settings=arm_settings(arm, settings))
        if args.results:
            kept = {**other, **arms}
            atomic_write_bytes(args.results, json.dumps(
                {"arms": {a: asdict(f) for a, f in kept.items()}}, indent=1).encode())
    print(json.dumps(summary(arms, cfg, compressed, "acc" if args.model == "classifier"
                             else "map50")))


if __name__ == "__main__":
    main()
