"""The training loop: minibatch AdamW with a warm-up + cosine schedule on a crop set.

Reads top to bottom: config, schedule, batches, steps, the whole-run loop. ``run_steps`` is the
unit the swarm uses too (a vehicle runs ``local_steps`` of the same schedule each round), so
local, central and swarm training differ only in which data and weights they start from.
Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.data import CropSet
from models.net import CropNet
from models.preprocess import to_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1200
    batch_size: int = 128
    lr: float = 3e-3  # peak of the schedule
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of the steps spent warming up
    seed: int = 0
    log_every: int = 100
    # Forward and backward in bfloat16 (weights, optimiser and loss stay float32): a step is
    # 1.5x faster on a CPU with AVX512-BF16 or AMX, slower on one without (docs/detector.md,
    # "Training in bfloat16").
    bf16: bool = False


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float  # mean over the last log window
    seconds: float


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to zero at ``total``."""
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def tensors(data: CropSet) -> tuple[np.ndarray, torch.Tensor]:
    """The crop set as training input: the uint8 crops as they are (each batch is normalised
    when it is drawn: a vehicle's buffer in float32 would be 4x its size, converted again
    whenever it grows) and the labels (N,)."""
    if len(data) == 0:
        raise ValueError("no labelled crops to train on")
    return data.images, torch.from_numpy(data.labels)


def get_batch(x: np.ndarray, y: torch.Tensor, batch_size: int,
              g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of the (N, S, S, 3) uint8 crops ``x`` as network input, with random
    horizontal flips (every class is left-right symmetric)."""
    idx = torch.randint(len(y), (batch_size,), generator=g)
    xb = torch.from_numpy(to_input(x[idx.numpy()]))
    flip = torch.rand(batch_size, generator=g) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    return xb, y[idx]


def run_steps(model: CropNet, opt: torch.optim.Optimizer, x: np.ndarray, y: torch.Tensor,
              first: int, steps: int, total: int, cfg: TrainConfig,
              g: torch.Generator) -> list[float]:
    """Steps ``first .. first + steps - 1`` of a ``total``-step schedule; returns the losses."""
    model.train()
    losses = []
    for step in range(first, first + steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        xb, yb = get_batch(x, y, cfg.batch_size, g)
        with autocast(cfg):  # autocast keeps the cross-entropy in float32
            _, loss = model(xb, yb)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Elsewhere torch
    emulates it, ~10x slower than float32 (benchmarks/precision.py, docs/detector.md)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def use_bf16(precision: str) -> bool:
    """Whether a vehicle configured for ``precision`` ("fp32", "bf16", or "auto": bfloat16
    where the CPU computes it natively) trains in bfloat16. "bf16" on a CPU that emulates it
    is obeyed, with a warning: the operator asked for it, but it costs ~10x."""
    if precision == "auto":
        return native_bf16()
    if precision == "bf16" and not native_bf16():
        log.warning("bf16_emulated slowdown=~10x: this CPU has neither AVX512-BF16 nor AMX; "
                    "set precision to auto or fp32")
    return precision == "bf16"


def autocast(cfg: TrainConfig) -> torch.autocast:
    """The forward pass's precision under ``cfg``: bfloat16 when ``cfg.bf16``, else float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)


StepsFn = Callable[[torch.optim.Optimizer, int, int, torch.Generator], list[float]]


def run_schedule(model: torch.nn.Module, cfg: TrainConfig, steps: StepsFn,
                 progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """The whole-run loop of every model family: seeds, optimiser, then ``cfg.steps`` steps in
    logged windows of ``cfg.log_every``; ``steps(opt, first, n, g)`` runs one window."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    t0 = time.perf_counter()
    losses: list[float] = []
    for first in range(0, cfg.steps, cfg.log_every):
        n = min(cfg.log_every, cfg.steps - first)
        losses = steps(opt, first, n, g)
        mean = float(np.mean(losses))
        log.info("train_step step=%d loss=%.4f", first + n, mean)
        if progress:
            progress(first + n, mean)
    return TrainResult(steps=cfg.steps, final_loss=float(np.mean(losses)),
                       seconds=time.perf_counter() - t0)


def train(model: CropNet, data: CropSet, cfg: TrainConfig,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` for ``cfg.steps`` steps."""
    x, y = tensors(data)
    return run_schedule(model, cfg, lambda opt, first, n, g: run_steps(
        model, opt, x, y, first, n, cfg.steps, cfg, g), progress)
