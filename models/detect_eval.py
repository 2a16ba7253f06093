"""Evaluating FrameNet in torch: detections for frames, and their COCO report (models/coco.py)."""

from __future__ import annotations

import numpy as np
import torch

from models.coco import DetReport, coco_report
from models.detect_data import FrameSet
from models.detect_decode import Detections, decode
from models.detector import FrameNet
from models.preprocess import to_input

EVAL_BATCH = 32


@torch.no_grad()
def predict(model: FrameNet, images: np.ndarray) -> list[Detections]:
    """Detections for (N, H, W, 3) uint8 frames at the network's size."""
    was_training = model.training
    model.eval()
    cfg = model.config
    out: list[Detections] = []
    for i in range(0, len(images), EVAL_BATCH):
        heat, dist = model(torch.from_numpy(to_input(images[i : i + EVAL_BATCH])))
        for h, d in zip(heat.numpy(), dist.numpy(), strict=True):
            size = (cfg.width, cfg.height)
            out.append(decode(h, d, cfg.stride, size, size))
    model.train(was_training)
    return out


def evaluate(model: FrameNet, data: FrameSet, classes: tuple[str, ...]) -> DetReport:
    return coco_report(predict(model, data.images), data.truths(), classes)
