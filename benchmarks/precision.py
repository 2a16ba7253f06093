"""A vehicle's training step in float32 and in bfloat16 (``TrainConfig.bf16``).

FrameNet at its batch (16 frames): the forward and backward pass alone, then a vehicle's whole
step (drawing and augmenting the batch, the step, encoding the delta: ``Learner.contribute``).
bfloat16 pays only on a CPU with AVX512-BF16 or AMX (``"cpu"`` in the output says which).

Prints {"fwd_bwd_fp32_s", "fwd_bwd_bf16_s", "step_fp32_s", "step_bf16_s", "cpu", ...} (medians)
as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from benchmarks.common import cpu, setup_threads
from models.detector import DetConfig, FrameNet
from models.train import TrainConfig, autocast, native_bf16
from sim.fleet import FleetConfig, fleet_learners, make_fleet_data


def fwd_bwd_s(bf16: bool, repeats: int) -> float:
    """Median seconds of FrameNet's forward and backward pass on a random batch of 16."""
    torch.manual_seed(0)
    model = FrameNet(DetConfig())
    x = torch.randn(16, 3, model.config.height, model.config.width)
    cfg = TrainConfig(bf16=bf16)
    times = []
    for i in range(repeats + 2):  # two warm-up passes
        t = time.perf_counter()
        with autocast(cfg):
            heat, dist = model(x)
        (heat.float().sum() + dist.float().sum()).backward()
        model.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_s(cfg: FleetConfig, steps: int, repeats: int) -> float:
    """Median seconds per step of vehicle 0's ``contribute`` over ``steps`` steps."""
    learner = fleet_learners(cfg, make_fleet_data(cfg))[0]
    base = learner.weights()
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        learner.contribute(base, bytes(32), r, steps)
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="timed passes (and contributions)")
    p.add_argument("--steps", type=int, default=10, help="steps in each timed contribution")
    args = p.parse_args()
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be at least 1")
    setup_threads()
    fleet = FleetConfig(vehicles=8, model="detector", rounds=args.repeats,
                        local_steps=args.steps).with_family_recipe()
    out = {
        "fwd_bwd_fp32_s": fwd_bwd_s(False, args.repeats),
        "fwd_bwd_bf16_s": fwd_bwd_s(True, args.repeats),
        "step_fp32_s": step_s(fleet, args.steps, args.repeats),
        "step_bf16_s": step_s(replace(fleet, bf16=True), args.steps, args.repeats),
    }
    result: dict[str, object] = {k: round(v, 4) for k, v in out.items()}
    result.update(step_speedup=round(out["step_fp32_s"] / out["step_bf16_s"], 2),
                  threads=torch.get_num_threads(), batch=fleet.batch_size, cpu=cpu(),
                  native_bf16=native_bf16())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
