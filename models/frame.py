"""The unit every camera source yields: one image and its (optional) ground-truth boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_BOXES = np.zeros((0, 4), np.float32)
NO_LABELS = np.zeros((0,), np.int64)


@dataclass(frozen=True)
class Frame:
    """A camera frame.

    ``boxes`` are pixel ``x0, y0, x1, y1`` rows and ``labels`` the class id of each; a live
    camera yields frames without any. ``origin`` says where the frame came from (a file path,
    ``sim:Town01/ClearNoon#12``, ``video:0#5``) so that errors and reports can name it.
    ``ignored`` boxes are objects a label source saw but does not count (too small, mostly
    hidden): a detector is neither rewarded nor penalised for them.
    """

    image: np.ndarray  # (H, W, 3) uint8, BGR
    origin: str
    boxes: np.ndarray = field(default_factory=lambda: NO_BOXES)  # (N, 4) float32
    labels: np.ndarray = field(default_factory=lambda: NO_LABELS)  # (N,) int64
    ignored: np.ndarray = field(default_factory=lambda: NO_BOXES)  # (M, 4) float32

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{self.origin}: expected an (H, W, 3) uint8 image, got "
                             f"{img.dtype} {img.shape}")
        if self.boxes.shape != (len(self.labels), 4):
            raise ValueError(f"{self.origin}: {len(self.labels)} labels but boxes of shape "
                             f"{self.boxes.shape}")
        if self.ignored.ndim != 2 or self.ignored.shape[1] != 4:
            raise ValueError(f"{self.origin}: ignored boxes of shape {self.ignored.shape}, "
                             "expected (M, 4)")
