"""COCO metrics for the detector, computed by pycocotools (never a hand-written mAP).

Numpy only: ``swarmdrive infer`` and the simulator's director score detections without torch.

Ignored ground truth (too small, mostly hidden: ``Truth.ignored``) goes to the evaluator
as ``iscrowd`` regions, its own ignore mechanism: a detection on one is neither a hit nor a
false positive. (pycocotools overwrites a plain ``ignore`` flag with ``iscrowd``, so iscrowd
is the one that works.) Area ranges are set for this camera: "small" is under 24x24 pixels
of a 320x240 frame, where a pedestrian 12-40 px tall or a car 25 m away lies.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.detect_data import Truth
from models.detect_decode import Detections

SMALL_AREA = 24.0**2
MEDIUM_AREA = 64.0**2


@dataclass(frozen=True)
class DetReport:
    map50: float
    map50_95: float
    small_map50: float | None  # None when the set has no small objects
    per_class_ap50: dict[str, float | None]  # None for a class absent from the set
    frames: int
    objects: int

    def to_dict(self) -> dict[str, object]:
        return {"map50": self.map50, "map50_95": self.map50_95, "small_map50": self.small_map50,
                "per_class_ap50": self.per_class_ap50, "frames": self.frames,
                "objects": self.objects}


def _box(b: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    return [x0, y0, x1 - x0, y1 - y0]


def ground_truth(truths: Sequence[Truth], classes: tuple[str, ...]) -> COCO:
    """Frames' labels as a pycocotools ground truth, ignored objects as crowd regions."""
    anns: list[dict[str, object]] = []

    def add(image: int, k: int, b: np.ndarray, crowd: int) -> None:
        x, y, w, h = _box(b)
        anns.append({"id": len(anns) + 1, "image_id": image, "category_id": k,
                     "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd})

    for i, t in enumerate(truths):
        for b, k in zip(t.boxes, t.labels, strict=True):
            add(i, int(k), b, 0)
        for b in t.ignored:  # a crowd region of every class
            for k in range(len(classes)):
                add(i, k, b, 1)
    coco = COCO()
    coco.dataset = {"images": [{"id": i} for i in range(len(truths))],
                    "annotations": anns,
                    "categories": [{"id": k, "name": c} for k, c in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _ap(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def coco_report(detections: Sequence[Detections], truths: Sequence[Truth],
                classes: tuple[str, ...]) -> DetReport:
    """mAP@0.5, mAP@0.5:0.95, small-object mAP@0.5 and per-class AP@0.5 of ``detections``."""
    assert len(detections) == len(truths), "one detection list per frame"
    objects = sum(len(t.labels) for t in truths)
    gt = ground_truth(truths, classes)
    results = [{"image_id": i, "category_id": int(k), "bbox": _box(b), "score": float(s)}
               for i, d in enumerate(detections)
               for b, s, k in zip(d.boxes, d.scores, d.labels, strict=True)]
    if not results or objects == 0:
        return DetReport(0.0, 0.0, None, {c: None for c in classes}, len(truths), objects)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        e = COCOeval(gt, dt, "bbox")
        e.params.areaRng = [[0, 1e10], [0, SMALL_AREA], [SMALL_AREA, MEDIUM_AREA],
                            [MEDIUM_AREA, 1e10]]
        e.evaluate()
        e.accumulate()
    p = e.eval["precision"]  # (IoU thresholds, recall points, classes, areas, maxDets)
    per_class = {c: _ap(p[0, :, k, 0, -1]) for k, c in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    small = [a for a in (_ap(p[0, :, k, 1, -1]) for k in range(len(classes))) if a is not None]
    return DetReport(
        map50=float(np.mean(present)) if present else 0.0,
        map50_95=float(np.mean([v for v in (_ap(p[:, :, k, 0, -1]) for k in range(len(classes)))
                                if v is not None])),
        small_map50=float(np.mean(small)) if small else None,
        per_class_ap50=per_class, frames=len(truths), objects=objects)
