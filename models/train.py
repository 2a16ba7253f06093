"""The training loop: minibatch AdamW with a one-cycle schedule on a crop set.

Reads top to bottom: config, batches, one loop. Deterministic for a given seed and thread
count (torch's CPU kernels are deterministic for these ops).
"""

from __future__ import annotations

import logging
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
    lr: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    seed: int = 0
    log_every: int = 100


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float  # mean over the last log window
    seconds: float


def get_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int,
              g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch with random horizontal flips (every class is left-right symmetric)."""
    idx = torch.randint(len(y), (batch_size,), generator=g)
    xb = x[idx]
    flip = torch.rand(batch_size, generator=g) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    return xb, y[idx]


def train(model: CropNet, data: CropSet, cfg: TrainConfig,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` for ``cfg.steps`` steps."""
    if len(data) == 0:
        raise ValueError("no labelled crops to train on")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.from_numpy(to_input(data.images))  # (N, 3, S, S)
    y = torch.from_numpy(data.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    model.train()
    t0 = time.perf_counter()
    window: list[float] = []
    for step in range(1, cfg.steps + 1):
        xb, yb = get_batch(x, y, cfg.batch_size, g)
        _, loss = model(xb, yb)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean = float(np.mean(window))
            log.info("train_step step=%d loss=%.4f", step, mean)
            if progress:
                progress(step, mean)
            if step != cfg.steps:
                window = []
    model.eval()
    return TrainResult(steps=cfg.steps, final_loss=float(np.mean(window)),
                       seconds=time.perf_counter() - t0)
