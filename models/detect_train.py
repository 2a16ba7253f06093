"""Training FrameNet: the crop classifier's schedule (models/train.py) on whole frames.

``run_steps`` is the unit a vehicle runs each swarm round, as for CropNet; ``train`` is the
whole-run loop of the benchmarks. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from models.detect_data import Augment, FrameSet, geometric, normalise
from models.detect_loss import Targets, detection_loss, frame_targets
from models.detector import FrameNet
from models.train import TrainConfig, TrainResult, lr_at

log = logging.getLogger(__name__)

DETECTOR_TRAIN = TrainConfig(steps=3000, batch_size=16, lr=4e-3, weight_decay=1e-4)


def make_optimizer(model: FrameNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def get_batch(model: FrameNet, data: FrameSet, batch_size: int, aug: Augment,
              rng: np.random.Generator, g: torch.Generator) -> tuple[torch.Tensor, Targets]:
    """A random augmented batch and its targets."""
    cfg = model.config
    images, targets = [], []
    for i in rng.integers(len(data), size=batch_size):
        img, boxes, labels, ignored = geometric(data.images[i], data.boxes[i], data.labels[i],
                                                data.ignored[i], aug, rng)
        images.append(img)
        targets.append(frame_targets(boxes, labels, ignored, cfg.n_classes, cfg.grid,
                                     cfg.stride))
    return normalise(np.stack(images), aug, g), Targets.stack(targets)


def run_steps(model: FrameNet, opt: torch.optim.Optimizer, data: FrameSet, first: int,
              steps: int, total: int, cfg: TrainConfig, aug: Augment,
              rng: np.random.Generator, g: torch.Generator) -> list[float]:
    """Steps ``first .. first + steps - 1`` of a ``total``-step schedule; returns the losses."""
    if len(data) == 0:
        raise ValueError("no labelled frames to train on")
    model.train()
    losses = []
    for step in range(first, first + steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        x, target = get_batch(model, data, cfg.batch_size, aug, rng, g)
        heat, dist = model(x)
        loss, _ = detection_loss(heat, dist, target, model.config.stride)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # GIoU's gradients spike when a box first overlaps its target; clip to keep the
        # first steps (and a vehicle's few local steps) stable.
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train(model: FrameNet, data: FrameSet, cfg: TrainConfig, aug: Augment | None = None,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` for ``cfg.steps`` steps (default augmentations)."""
    aug = Augment() if aug is None else aug
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    t0 = time.perf_counter()
    losses: list[float] = []
    for first in range(0, cfg.steps, cfg.log_every):
        n = min(cfg.log_every, cfg.steps - first)
        losses = run_steps(model, opt, data, first, n, cfg.steps, cfg, aug, rng, g)
        mean = float(np.mean(losses))
        log.info("train_step step=%d loss=%.4f", first + n, mean)
        if progress:
            progress(first + n, mean)
    return TrainResult(steps=cfg.steps, final_loss=float(np.mean(losses)),
                       seconds=time.perf_counter() - t0)
