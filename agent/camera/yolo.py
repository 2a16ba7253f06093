"""YOLO label files: one ``class cx cy w h`` line per box, coordinates normalised to 0..1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LABEL_BYTES = 1 << 20  # a label file is a few hundred bytes; refuse anything huge


class LabelError(ValueError):
    """A label file that cannot be parsed; the message names the file and the line."""


def format_labels(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> str:
    """YOLO text for pixel ``boxes`` (x0, y0, x1, y1) in an image of ``width`` x ``height``."""
    lines = []
    for (x0, y0, x1, y1), c in zip(boxes.tolist(), labels.tolist(), strict=True):
        lines.append(f"{c} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return "".join(line + "\n" for line in lines)


def parse_labels(text: str, width: int, height: int, n_classes: int,
                 origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boxes and class ids from YOLO ``text``; raises ``LabelError`` naming the line."""
    boxes, labels = [], []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 fields, got {len(parts)}")
            c = int(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError as e:
            raise LabelError(f"{origin}:{no}: not a YOLO label line ({e})") from None
        if not 0 <= c < n_classes:
            raise LabelError(f"{origin}:{no}: class {c} is outside 0..{n_classes - 1}")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise LabelError(f"{origin}:{no}: box {cx} {cy} {w} {h} is not inside 0..1")
        x0, x1 = max(0.0, (cx - w / 2) * width), min(float(width), (cx + w / 2) * width)
        y0, y1 = max(0.0, (cy - h / 2) * height), min(float(height), (cy + h / 2) * height)
        boxes.append((x0, y0, x1, y1))
        labels.append(c)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_labels(path: Path, width: int, height: int,
                n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse the YOLO label file at ``path``."""
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise LabelError(f"{path}: label file is larger than {MAX_LABEL_BYTES} bytes")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise LabelError(f"{path}: label file is not ASCII text") from None
    return parse_labels(text, width, height, n_classes, str(path))


def label_path_for(image: Path) -> Path | None:
    """The label file for ``image``: beside it, or in the sibling ``labels/`` folder."""
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    if image.parent.name == "images":
        sibling = image.parent.parent / "labels" / (image.stem + ".txt")
        if sibling.is_file():
            return sibling
    return None
