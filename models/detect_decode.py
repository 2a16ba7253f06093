"""From FrameNet's two output maps to a list of objects: numpy only, what the server runs.

A detection is a heatmap cell that is the largest of its 3x3 neighbourhood in its class (the
max-pool trick that replaces NMS in CenterNet) and scores at least ``min_score``; its box is
the cell centre minus/plus the predicted distances, clipped to the frame and scaled back to
the frame's own size. No torch here: the serving process never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SCORE = 0.05  # COCO evaluation wants low-confidence detections too; callers raise it
MAX_DETECTIONS = 100  # COCO's maxDets


@dataclass(frozen=True)
class Detections:
    """Objects in one frame, best first."""

    boxes: np.ndarray  # (N, 4) float32 pixel x0, y0, x1, y1 in the frame's own size
    scores: np.ndarray  # (N,) float32 in 0..1
    labels: np.ndarray  # (N,) int64 class ids

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score: float) -> Detections:
        keep = self.scores >= score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def local_maxima(heat: np.ndarray) -> np.ndarray:
    """Boolean mask of cells that are the maximum of their 3x3 neighbourhood, per class."""
    c, h, w = heat.shape
    padded = np.full((c, h + 2, w + 2), -np.inf, heat.dtype)
    padded[:, 1:-1, 1:-1] = heat
    best = heat.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(best, padded[:, dy : dy + h, dx : dx + w], out=best)
    mask: np.ndarray = heat >= best
    return mask


def decode(heat_logits: np.ndarray, dist: np.ndarray, stride: int,
           frame_size: tuple[int, int], input_size: tuple[int, int],
           min_score: float = MIN_SCORE, max_detections: int = MAX_DETECTIONS) -> Detections:
    """Detections of one frame from its (C, R, W) heatmap logits and (4, R, W) distances.

    ``input_size`` and ``frame_size`` are (width, height) of the network input and of the
    original frame; boxes come back in the frame's pixels.
    """
    min_logit = -np.inf if min_score <= 0 else np.log(min_score / (1 - min_score))
    peaks = local_maxima(heat_logits) & (heat_logits >= min_logit)
    k, r, c = np.nonzero(peaks)
    logits = heat_logits[k, r, c]
    order = np.argsort(-logits, kind="stable")[:max_detections]
    k, r, c, logits = k[order], r[order], c[order], logits[order]
    cx, cy = (c + 0.5) * stride, (r + 0.5) * stride
    d = dist[:, r, c]  # (4, N)
    iw, ih = input_size
    fw, fh = frame_size
    boxes = np.stack([np.clip(cx - d[0], 0, iw) * (fw / iw), np.clip(cy - d[1], 0, ih) * (fh / ih),
                      np.clip(cx + d[2], 0, iw) * (fw / iw), np.clip(cy + d[3], 0, ih) * (fh / ih)],
                     axis=1).astype(np.float32)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return Detections(boxes.reshape(-1, 4), scores, k.astype(np.int64))
