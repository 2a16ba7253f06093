"""Accuracy against payload size on Flower's schedule: how small can a delta be?

Issue 14 asks for 50x fewer bytes than Flower at no more than a point under its accuracy after
the same round (docs/scaling.md, "Bytes against Flower"). This measures the codec's side of that:
the in-memory fleet (``sim.fleet.run_swarm``: 8 vehicles, 20 rounds of 30 steps, the mean rule)
once per codec of ``--codecs``, the merged model scored on the fleet-wide test set after every
round. Then a star, Flower's topology with swarmdrive's codec: every payload goes up to one
aggregator and one merged delta comes down, compressed with ``--star`` (the aggregator keeps its
own error feedback), so a client moves one payload each way. Last, fewer contributions a round:
``--contributors`` vehicles in turn send a payload (``--star``'s codec), the others train and
keep their delta in the residual until their turn.

Prints {"codecs": [{"density", "bits", "payload_bytes", "acc_by_round"}, ...], "star":
{"density", "bits", "up_bytes", "down_bytes", "acc_by_round"}, "partial": {"contributors",
"density", "bits", "payload_bytes", "acc_by_round"}, "rounds", "local_steps", "seconds"} as its
last line.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np

from agent.commands.args import int_range
from agent.swarm.combine import combine
from benchmarks.common import log, setup_threads
from models.codec import FLEET_CODEC, CodecConfig, decode, encode
from models.layout import flat_hash
from sim.fleet import (
    FleetConfig,
    FleetData,
    RoundStats,
    fleet_learners,
    make_fleet_data,
    run_swarm,
    score_weights,
)

CODECS = [FLEET_CODEC, CodecConfig(0.05, 8), CodecConfig(0.05, 4), CodecConfig(0.03, 8),
          CodecConfig(0.02, 4)]


def codec_arg(text: str) -> CodecConfig:
    """``density:bits``, e.g. ``0.05:8``."""
    density, _, bits = text.partition(":")
    try:
        return CodecConfig(float(density), int(bits))
    except ValueError as e:
        why = e if "codec" in str(e) else "want density:bits, e.g. 0.05:8"
        raise argparse.ArgumentTypeError(f"{text!r}: {why}") from None


def run_codec(cfg: FleetConfig, data: FleetData) -> dict[str, Any]:
    """The fleet with ``cfg.codec``: each vehicle's payload and the accuracy after each round."""
    rounds: list[RoundStats] = []
    result = run_swarm(cfg, data, progress=rounds.append, eval_every=1)
    return {"density": cfg.codec.density, "bits": cfg.codec.bits,
            "payload_bytes": round(result.bytes_per_round),
            "acc_by_round": [round(float(st.accuracy or 0), 4) for st in rounds]}


def run_star(cfg: FleetConfig, data: FleetData, down: CodecConfig) -> dict[str, Any]:
    """The fleet through one aggregator: payloads up with ``cfg.codec``, the merged delta down
    with ``down`` and the aggregator's error feedback."""
    learners = fleet_learners(cfg, data)
    layout, base = learners[0].layout, learners[0].weights()
    residual = np.zeros(layout.size, np.float32)
    up, down_bytes, acc = [], [], []
    for r in range(cfg.rounds):
        base_hash = bytes.fromhex(flat_hash(layout, base))
        outs = [lr.contribute(base, base_hash, r, cfg.local_steps) for lr in learners]
        merged = combine(base, [(o.payload, o.samples) for o in outs], layout, cfg.merge).model
        payload, residual = encode(merged - base, layout, base_hash, r, down, residual)
        base = base + decode(payload, layout).values
        up.append(np.mean([len(o.payload) for o in outs]))
        down_bytes.append(len(payload))
        acc.append(round(score_weights(learners[0], base, data.test), 4))
    return {"density": down.density, "bits": down.bits, "up_bytes": round(float(np.mean(up))),
            "down_bytes": round(float(np.mean(down_bytes))), "acc_by_round": acc}


def run_partial(cfg: FleetConfig, data: FleetData, k: int) -> dict[str, Any]:
    """Only ``k`` vehicles contribute each round, in turn; the others train as usual and keep
    their delta in the error-feedback residual until their turn (what fewer contributions a
    round would cost the fleet's learning)."""
    learners = fleet_learners(cfg, data)
    layout, base, n = learners[0].layout, learners[0].weights(), len(learners)
    sent, acc = [], []
    for r in range(cfg.rounds):
        base_hash = bytes.fromhex(flat_hash(layout, base))
        turn = {(r * k + j) % n for j in range(k)}
        for i, lr in enumerate(learners):
            if i not in turn:
                lr.step = r * cfg.local_steps
                delta, _ = lr.train_round(base, cfg.local_steps)
                lr.residual += delta
        outs = [learners[i].contribute(base, base_hash, r, cfg.local_steps) for i in sorted(turn)]
        base = combine(base, [(o.payload, o.samples) for o in outs], layout, cfg.merge).model
        sent.append(np.mean([len(o.payload) for o in outs]))
        acc.append(round(score_weights(learners[0], base, data.test), 4))
    return {"contributors": k, "density": cfg.codec.density, "bits": cfg.codec.bits,
            "payload_bytes": round(float(np.mean(sent))), "acc_by_round": acc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int_range(1), default=20)
    p.add_argument("--local-steps", type=int_range(1), default=30)
    p.add_argument("--codecs", type=codec_arg, nargs="+", default=CODECS, metavar="D:B",
                   help="density:bits of each fleet's payloads (default: 0.1:8 (the fleet's), "
                        "0.05:8, 0.05:4, 0.03:8, 0.02:4)")
    p.add_argument("--star", type=codec_arg, default=CodecConfig(0.05, 8), metavar="D:B",
                   help="density:bits of the star's payloads, up and down (default: 0.05:8)")
    p.add_argument("--contributors", type=int_range(1, FleetConfig.vehicles), default=2,
                   help="vehicles contributing each round, in turn, in the partial run "
                        "(with --star's codec; default: 2)")
    args = p.parse_args()
    setup_threads()
    t0 = time.perf_counter()
    cfg = FleetConfig(rounds=args.rounds, local_steps=args.local_steps)
    data = make_fleet_data(cfg)
    codecs = []
    for codec in args.codecs:
        codecs.append(run_codec(replace(cfg, codec=codec), data))
        log(f"{codec}: {codecs[-1]['payload_bytes']} bytes, after the last round "
            f"{codecs[-1]['acc_by_round'][-1]}")
    star = run_star(replace(cfg, codec=args.star), data, args.star)
    log(f"star {args.star}: up {star['up_bytes']} and down {star['down_bytes']} bytes, "
        f"after the last round {star['acc_by_round'][-1]}")
    partial = run_partial(replace(cfg, codec=args.star), data, args.contributors)
    log(f"{args.contributors} contributors a round, {args.star}: {partial['payload_bytes']} "
        f"bytes, after the last round {partial['acc_by_round'][-1]}")
    print(json.dumps({"codecs": codecs, "star": star, "partial": partial, "rounds": cfg.rounds,
                      "local_steps": cfg.local_steps,
                      "seconds": round(time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
