"""Training FrameNet: the crop classifier's schedule (models/train.py) on whole frames.

``run_steps`` is the unit a vehicle runs each swarm round, as for CropNet; ``train`` is the
whole-run loop of the benchmarks. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models.detect_data import Augment, FrameSet, geometric
from models.detect_loss import Targets, detection_loss, frame_targets
from models.detector import FrameNet
from models.preprocess import MEAN_RGB, STD_RGB
from models.recipe import RECIPES
from models.train import TrainConfig, TrainResult, autocast, lr_at, run_schedule

DETECTOR_TRAIN = TrainConfig(steps=4000, batch_size=RECIPES["detector"].batch_size,
                             lr=RECIPES["detector"].lr, weight_decay=1e-4)


def photometric(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random light, colour, haze, noise and blur on a (B, 3, H, W) RGB batch in 0..1."""
    b = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=g)

    x = x * u(0.4, 1.4, 1, 1, 1) * u(0.8, 1.2, 3, 1, 1)  # brightness, tint
    x = x.clamp(0, 1) ** u(0.7, 1.5, 1, 1, 1)  # gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.3, 1, 1, 1) + mean  # contrast
    hazy = (torch.rand(b, 1, 1, 1, generator=g) < 0.3).float() * u(0.0, 0.5, 1, 1, 1)
    x = x * (1 - hazy) + hazy * u(0.4, 0.8, 1, 1, 1)  # fog veil
    x = x + torch.randn(x.shape, generator=g) * u(0.0, 0.04, 1, 1, 1)  # sensor noise
    blur = torch.rand(b, generator=g) < 0.2
    if blur.any():  # only the frames drawn for it: blurring the whole batch was half the cost
        x[blur] = F.avg_pool2d(x[blur], 3, stride=1, padding=1, count_include_pad=False)
    return x.clamp_(0, 1)


def batch_tensor(bgr: np.ndarray, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """(B, H, W, 3) uint8 BGR -> (B, 3, H, W) network input, as ``to_input`` after ``aug``."""
    x = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(0, 3, 1, 2).float() / 255
    if aug.photometric:
        x = photometric(x, g)
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def get_batch(model: FrameNet, data: FrameSet, batch_size: int, aug: Augment,
              rng: np.random.Generator, g: torch.Generator) -> tuple[torch.Tensor, Targets]:
    """A random augmented batch and its targets."""
    cfg = model.config
    images, targets = [], []
    for i in rng.choice(len(data), size=batch_size, p=data.sampling_weights(cfg.n_classes)):
        img, boxes, labels, ignored = geometric(data.images[i], data.boxes[i], data.labels[i],
                                                data.ignored[i], aug, rng)
        images.append(img)
        targets.append(frame_targets(boxes, labels, ignored, cfg.n_classes, cfg.grid,
                                     cfg.stride))
    return batch_tensor(np.stack(images), aug, g), Targets.stack(targets)


def run_steps(model: FrameNet, opt: torch.optim.Optimizer, data: FrameSet, first: int,
              steps: int, total: int, cfg: TrainConfig, g: torch.Generator,
              aug: Augment | None = None) -> list[float]:
    """Steps ``first .. first + steps - 1`` of a ``total``-step schedule; returns the losses.

    ``g`` is the only random state (the learner checkpoints it): each step draws the seed of
    its numpy generator (frame choice, flips, zooms) from it.
    """
    aug = Augment() if aug is None else aug
    if len(data) == 0:
        raise ValueError("no labelled frames to train on")
    model.train()
    losses = []
    for step in range(first, first + steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        rng = np.random.default_rng(int(torch.randint(1 << 62, (1,), generator=g)))
        x, target = get_batch(model, data, cfg.batch_size, aug, rng, g)
        with autocast(cfg):
            heat, dist = model(x)
        loss, _ = detection_loss(heat.float(), dist.float(), target, model.config.stride)
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
    return run_schedule(model, cfg, lambda opt, first, n, g: run_steps(
        model, opt, data, first, n, cfg.steps, cfg, g, aug), progress)
