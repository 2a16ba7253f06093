"""Labelled crop sets: what training and evaluation consume."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.frame import Frame
from models.preprocess import crops


@dataclass(frozen=True)
class CropSet:
    """Crops (N, S, S, 3) uint8 BGR with their class ids (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        assert len(self.images) == len(self.labels), "one label per crop"

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(sets: Iterable[CropSet]) -> CropSet:
        sets = list(sets)
        if not sets:
            raise ValueError("no crop sets to concatenate")
        return CropSet(np.concatenate([s.images for s in sets]),
                       np.concatenate([s.labels for s in sets]))

    def window(self, start: int, stop: int) -> CropSet:
        """Crops ``start .. stop - 1`` as views, not copies."""
        return CropSet(self.images[start:stop], self.labels[start:stop])

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)


def crops_from_frames(frames: Iterable[Frame], size: int) -> CropSet:
    """Every labelled box of every frame as a crop."""
    images, labels = [], []
    for f in frames:
        if len(f.labels):
            images.append(crops(f.image, f.boxes, size))
            labels.append(f.labels)
    if not images:
        return CropSet(np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64))
    return CropSet(np.concatenate(images), np.concatenate(labels))
