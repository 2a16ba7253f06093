"""Labelled frames for the detector, and the augmentations that carry it across domains.

Numpy and OpenCV only (the photometric half runs in torch, in models/detect_train.py), so
that ``swarmdrive infer`` can read labelled frames without torch.

A ``FrameSet`` holds whole frames at the network's input size with their boxes. Objects
under ``MIN_BOX_PX`` rows tall count as ignored, like KITTI's "hard" cut-off: too few pixels to
name reliably, so a detector is neither rewarded nor penalised for them.

Why these augmentations (docs/detector.md has the ablation): a vehicle sees one town under one
weather, and the fleet's model must work in all of them. Towns differ in scale and layout,
weathers in light, colour, contrast, haze and sharpness. So:
  geometric    horizontal flip; zoom 0.75-1.33x about a random point (objects nearer or
               farther, other road widths)
  photometric  brightness 0.4-1.4x (night to noon), per-channel gain 0.8-1.2 (sunset's tint),
               gamma 0.7-1.5, contrast 0.6-1.3, haze towards a grey (fog), sensor noise, a
               slight blur (rain on the lens)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from models.frame import Frame

MIN_BOX_PX = 12.0  # rows of a 240-row frame: the smallest object that counts
REPEAT_THRESHOLD = 0.3  # classes in fewer than 30% of the frames are drawn more often
MIN_KEPT = 0.6  # an object cut by a zoom counts only if this much of it is still in the frame


@dataclass(frozen=True)
class Truth:
    """One frame's ground truth, in that frame's pixels."""

    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1: objects that count
    labels: np.ndarray  # (n,) int64
    ignored: np.ndarray  # (m, 4) float32: neither a hit nor a miss

    @staticmethod
    def of(frame: Frame) -> Truth:
        """A frame's labels, objects under ``MIN_BOX_PX`` (scaled to its height) ignored."""
        min_h = MIN_BOX_PX * frame.image.shape[0] / 240
        return Truth(*split_small(frame.boxes, frame.labels, frame.ignored, min_h))


@dataclass(frozen=True)
class FrameSet:
    """Frames (N, H, W, 3) uint8 BGR at the network's size, with per-frame ground truth."""

    images: np.ndarray
    boxes: tuple[np.ndarray, ...]  # (n_i, 4) float32 pixels
    labels: tuple[np.ndarray, ...]  # (n_i,) int64
    ignored: tuple[np.ndarray, ...]  # (m_i, 4) float32 pixels
    origins: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.images)
        assert len(self.boxes) == len(self.labels) == len(self.ignored) == len(self.origins) == n, (
            "one ground truth per frame")

    def __len__(self) -> int:
        return len(self.images)

    def objects(self) -> int:
        return sum(len(b) for b in self.labels)

    def sampling_weights(self, n_classes: int, threshold: float = REPEAT_THRESHOLD) -> np.ndarray:
        """How often to draw each frame: LVIS's repeat-factor sampling (Gupta et al. 2019).

        A class seen in a fraction f of the frames gets r = max(1, sqrt(threshold / f)); a
        frame is drawn in proportion to its rarest class's r. Traffic lights and stop signs are
        in a few percent of the frames, cars in most: without this the rare classes see ~20x
        fewer examples and their AP trails.
        """
        present = np.zeros((len(self), n_classes), np.bool_)
        for i, lab in enumerate(self.labels):
            present[i, lab] = True
        f = present.mean(axis=0)
        r = np.where(f > 0, np.sqrt(threshold / np.maximum(f, 1e-12)), 1.0).clip(min=1.0)
        weights = np.where(present, r[None, :], 1.0).max(axis=1)
        return weights / weights.sum()

    def truths(self) -> list[Truth]:
        return [Truth(*t) for t in zip(self.boxes, self.labels, self.ignored, strict=True)]

    def subset(self, idx: Iterable[int]) -> FrameSet:
        ix = list(idx)
        return FrameSet(self.images[ix], tuple(self.boxes[i] for i in ix),
                        tuple(self.labels[i] for i in ix), tuple(self.ignored[i] for i in ix),
                        tuple(self.origins[i] for i in ix))

    def window(self, start: int, stop: int) -> FrameSet:
        """Frames ``start .. stop - 1``, their pixels as a view, not a copy."""
        return FrameSet(self.images[start:stop], self.boxes[start:stop], self.labels[start:stop],
                        self.ignored[start:stop], self.origins[start:stop])

    @staticmethod
    def concat(sets: Iterable[FrameSet]) -> FrameSet:
        sets = list(sets)
        if not sets:
            raise ValueError("no frame sets to concatenate")
        return FrameSet(np.concatenate([s.images for s in sets]),
                        sum((s.boxes for s in sets), ()), sum((s.labels for s in sets), ()),
                        sum((s.ignored for s in sets), ()), sum((s.origins for s in sets), ()))


def split_small(boxes: np.ndarray, labels: np.ndarray, ignored: np.ndarray,
                min_height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move boxes shorter than ``min_height`` rows from the counted ones to the ignored ones."""
    small = (boxes[:, 3] - boxes[:, 1]) < min_height
    return (boxes[~small], labels[~small],
            np.concatenate([ignored, boxes[small]]).astype(np.float32).reshape(-1, 4))


def frames_to_set(frames: Iterable[Frame], width: int, height: int) -> FrameSet:
    """Resize each frame to ``width`` x ``height`` with its boxes; small objects are ignored."""
    images, boxes, labels, ignored, origins = [], [], [], [], []
    min_h = MIN_BOX_PX * height / 240
    for f in frames:
        h, w = f.image.shape[:2]
        scale = np.array([width / w, height / h, width / w, height / h], np.float32)
        img = f.image if (w, h) == (width, height) else cv2.resize(
            f.image, (width, height), interpolation=cv2.INTER_AREA)
        b, lab, ign = split_small(f.boxes * scale, f.labels, f.ignored * scale, min_h)
        images.append(img)
        boxes.append(b.astype(np.float32))
        labels.append(lab)
        ignored.append(ign)
        origins.append(f.origin)
    stack = np.stack(images) if images else np.zeros((0, height, width, 3), np.uint8)
    return FrameSet(stack, tuple(boxes), tuple(labels), tuple(ignored), tuple(origins))


@dataclass(frozen=True)
class Augment:
    """Which augmentations a batch gets (see the module docstring for why each)."""

    flip: bool = True
    zoom: tuple[float, float] = (0.75, 1.33)  # (1, 1) for none
    photometric: bool = True

    @staticmethod
    def none() -> Augment:
        return Augment(flip=False, zoom=(1.0, 1.0), photometric=False)


def geometric(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignored: np.ndarray,
              aug: Augment, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A flipped and zoomed copy of one frame and its ground truth."""
    h, w = image.shape[:2]
    if aug.flip and rng.random() < 0.5:
        image = image[:, ::-1]
        boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        ignored = np.stack([w - ignored[:, 2], ignored[:, 1], w - ignored[:, 0], ignored[:, 3]],
                           axis=1)
    s = float(np.exp(rng.uniform(np.log(aug.zoom[0]), np.log(aug.zoom[1]))))
    if s == 1.0:
        return np.ascontiguousarray(image), boxes, labels, ignored
    # Zoom about a random point so that every part of the frame can end up in view.
    px, py = rng.uniform(0, w), rng.uniform(0, h)
    tx, ty = px - s * px, py - s * py
    m = np.array([[s, 0, tx], [0, s, ty]], np.float32)
    image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    lo, hi = np.array([0, 0, 0, 0], np.float32), np.array([w, h, w, h], np.float32)
    shift = np.array([tx, ty, tx, ty], np.float32)
    moved, cut = boxes * s + shift, np.clip(boxes * s + shift, lo, hi)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    kept = (cut[:, 2] - cut[:, 0]) * (cut[:, 3] - cut[:, 1])
    counts = (kept >= MIN_KEPT * area) & ((cut[:, 3] - cut[:, 1]) >= MIN_BOX_PX * h / 240)
    visible = (cut[:, 2] > cut[:, 0]) & (cut[:, 3] > cut[:, 1])
    ign = np.clip(ignored * s + shift, lo, hi)
    ign = np.concatenate([ign, cut[visible & ~counts]])
    ign = ign[(ign[:, 2] > ign[:, 0]) & (ign[:, 3] > ign[:, 1])]
    return image, cut[counts], labels[counts], ign.astype(np.float32).reshape(-1, 4)
