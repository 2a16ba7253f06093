"""The training recipe the benchmarks share, so every number comes from the same budget."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import torch

from models.data import CropSet
from models.net import CropNet, NetConfig
from models.train import TrainConfig, train
from sim.datasets import domains_crops, fleet_test_set
from sim.world import all_domains

STEPS = 1200  # the training budget: steps of batch 128
FRAMES = 1960  # training frames per model, however they are split over domains
TEST_FRAMES_PER_DOMAIN = 12
SIZE = NetConfig().input_size


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu() -> dict[str, object]:
    """The CPU that latency figures were measured on: int8 is fast only with VNNI
    (``avx512_vnni`` or ``avx_vnni``), so a figure without it is not comparable."""
    name, flags = "unknown", set()
    with contextlib.suppress(OSError):  # not Linux: no /proc/cpuinfo
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"model": name, "avx512": "avx512f" in flags,
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags)}


def setup_threads() -> None:
    torch.set_num_threads(int(os.environ.get("SWARMDRIVE_THREADS", "2")))


def fleet_test() -> CropSet:
    return fleet_test_set(seed=0, frames_per_domain=TEST_FRAMES_PER_DOMAIN, size=SIZE)


def all_domains_data(seed: int = 1) -> CropSet:
    domains = all_domains()
    return domains_crops(domains, seed, FRAMES // len(domains), SIZE)


def one_domain_data(town: str, weather: str, seed: int = 1) -> CropSet:
    return domains_crops([(town, weather)], seed, FRAMES, SIZE)


def train_model(data: CropSet, seed: int = 0) -> CropNet:
    torch.manual_seed(seed)
    model = CropNet(NetConfig())
    result = train(model, data, TrainConfig(steps=STEPS, seed=seed))
    log(f"trained on {len(data)} crops in {result.seconds:.0f} s, loss {result.final_loss:.4f}")
    return model
