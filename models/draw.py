"""Pictures of detections: boxes, class names and scores drawn on a frame (OpenCV only)."""

from __future__ import annotations

import cv2
import numpy as np

from models.detect_decode import Detections

# One BGR colour per class id, far apart on the colour wheel (Okabe-Ito, colour-blind safe).
PALETTE = ((0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240),
           (178, 114, 0), (0, 94, 213), (167, 121, 204), (80, 80, 255))


def draw(image: np.ndarray, dets: Detections, classes: tuple[str, ...]) -> np.ndarray:
    """A copy of ``image`` (BGR uint8) with every detection boxed and labelled."""
    out = image.copy()
    scale = max(0.3, image.shape[0] / 900)
    for (x0, y0, x1, y1), score, k in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                          dets.labels.tolist(), strict=True):
        colour = PALETTE[k % len(PALETTE)]
        p0, p1 = (round(x0), round(y0)), (round(x1), round(y1))
        cv2.rectangle(out, p0, p1, colour, 1, cv2.LINE_AA)
        text = f"{classes[k]} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, p0[1] - th - base)
        left = max(0, min(p0[0], out.shape[1] - tw))  # keep the label inside the frame
        cv2.rectangle(out, (left, top), (left + tw, top + th + base), colour, -1)
        cv2.putText(out, text, (left, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out
