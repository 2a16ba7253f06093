"""FrameNet's training targets and loss: Gaussian heatmaps, GIoU boxes, ignore regions.

Targets (numpy, per frame, on the stride-4 grid), after TTFNet (Liu et al. 2020):
  heat    (C, R, W) for each object, an elliptical Gaussian at its centre with sigmas of
          ALPHA/6 of its width and height, 1.0 exactly at the centre cell; max over objects
  box     (4, R, W) the pixel box x0, y0, x1, y1 that each cell regresses to
  weight  (R, W) how much each cell's box counts: the Gaussian again, each object's cells
          summing to 1 so that a bus does not outweigh a pedestrian; smaller objects win a cell
          that two objects share
  ignore  (R, W) cells inside ignored ground truth: no heatmap penalty there, so a detector is
          not taught to miss a half-hidden car

Loss (torch): CenterNet's penalty-reduced focal loss on the heatmap, normalised by the number
of objects, plus GIOU_WEIGHT x the weighted GIoU loss of the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ALPHA = 0.54  # Gaussian radius as a fraction of the box (TTFNet's alpha and beta)
GIOU_WEIGHT = 5.0  # TTFNet's regression weight
MIN_SIGMA = 0.2  # cells: tiny objects still get a peak cell and a little shoulder


@dataclass(frozen=True)
class Targets:
    """A batch of targets as tensors."""

    heat: torch.Tensor  # (B, C, R, W)
    box: torch.Tensor  # (B, 4, R, W)
    weight: torch.Tensor  # (B, R, W)
    ignore: torch.Tensor  # (B, R, W) bool

    @staticmethod
    def stack(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> Targets:
        heat, box, weight, ignore = (torch.from_numpy(np.stack(xs)) for xs in zip(*parts,
                                                                                  strict=True))
        return Targets(heat, box, weight, ignore)


def frame_targets(boxes: np.ndarray, labels: np.ndarray, ignored: np.ndarray, n_classes: int,
                  grid: tuple[int, int], stride: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(heat, box, weight, ignore) for one frame's pixel ``boxes`` and class ``labels``."""
    rows, cols = grid
    heat = np.zeros((n_classes, rows, cols), np.float32)
    box = np.zeros((4, rows, cols), np.float32)
    weight = np.zeros((rows, cols), np.float32)
    ignore = np.zeros((rows, cols), np.bool_)
    for x0, y0, x1, y1 in ignored:
        ignore[int(y0 // stride) : int(np.ceil(y1 / stride)),
               int(x0 // stride) : int(np.ceil(x1 / stride))] = True
    ys = (np.arange(rows, dtype=np.float32) + 0.5) * stride
    xs = (np.arange(cols, dtype=np.float32) + 0.5) * stride
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas, kind="stable"):  # large first: smaller ones overwrite
        x0, y0, x1, y1 = boxes[i]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        sx = max(MIN_SIGMA * stride, ALPHA * (x1 - x0) / 6)
        sy = max(MIN_SIGMA * stride, ALPHA * (y1 - y0) / 6)
        g = np.exp(-((ys[:, None] - cy) ** 2) / (2 * sy * sy)
                   - ((xs[None, :] - cx) ** 2) / (2 * sx * sx)).astype(np.float32)
        g[g < 1e-3] = 0.0
        r, c = min(rows - 1, int(cy // stride)), min(cols - 1, int(cx // stride))
        g[r, c] = 1.0  # the centre cell is the one positive of the focal loss
        k = int(labels[i])
        np.maximum(heat[k], g, out=heat[k])
        mine = g > 0
        box[:, mine] = boxes[i][:, None]
        weight[mine] = g[mine] / g.sum()
    ignore &= heat.max(axis=0) < 1.0  # never hide a real object's centre
    return heat, box, weight, ignore


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per object."""
    pos = heat.eq(1.0)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    pos_loss = ((1 - p) ** 2 * log_p)[pos].sum()
    neg_w = (1 - heat) ** 4 * (~pos) * (~ignore[:, None])
    neg_loss = (neg_w * p**2 * log_not_p).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def cell_centres(rows: int, cols: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys = (torch.arange(rows, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(cols, dtype=torch.float32) + 0.5) * stride
    return ys[:, None].expand(rows, cols), xs[None, :].expand(rows, cols)


def giou_loss(dist: torch.Tensor, target: Targets, stride: int) -> torch.Tensor:
    """Weighted 1 - GIoU between each weighted cell's box and its object's box."""
    rows, cols = dist.shape[-2:]
    cy, cx = cell_centres(rows, cols, stride)
    b, r, c = target.weight.nonzero(as_tuple=True)
    if len(b) == 0:
        return dist.sum() * 0.0  # keeps the graph; no boxes in this batch
    w = target.weight[b, r, c]
    d = dist[b, :, r, c]  # (P, 4) left, top, right, bottom
    px0, py0 = cx[r, c] - d[:, 0], cy[r, c] - d[:, 1]
    px1, py1 = cx[r, c] + d[:, 2], cy[r, c] + d[:, 3]
    t = target.box[b, :, r, c]  # (P, 4)
    iw = (torch.minimum(px1, t[:, 2]) - torch.maximum(px0, t[:, 0])).clamp(min=0)
    ih = (torch.minimum(py1, t[:, 3]) - torch.maximum(py0, t[:, 1])).clamp(min=0)
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = ((torch.maximum(px1, t[:, 2]) - torch.minimum(px0, t[:, 0]))
            * (torch.maximum(py1, t[:, 3]) - torch.minimum(py0, t[:, 1]))).clamp(min=1e-6)
    giou = iou - (hull - union) / hull
    return ((1 - giou) * w).sum() / w.sum().clamp(min=1e-6)


def detection_loss(heat_logits: torch.Tensor, dist: torch.Tensor, target: Targets,
                   stride: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss and its parts (for logs)."""
    focal = focal_loss(heat_logits, target.heat, target.ignore)
    giou = giou_loss(dist, target, stride)
    loss = focal + GIOU_WEIGHT * giou
    return loss, {"heat": focal.item(), "giou": giou.item()}
