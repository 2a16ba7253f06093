"""An image folder with YOLO labels, as ``swarmdrive render`` writes and datasets ship."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from agent.camera.source import CameraError, CorruptImageError, SourceStatistics, read_image
from agent.camera.yolo import LabelError, label_path_for, read_labels
from models.frame import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_frame(path: Path, n_classes: int) -> Frame:
    """One image and, when a YOLO label file goes with it, its boxes."""
    img = read_image(path)
    label_file = label_path_for(path)
    if label_file is None:
        return Frame(image=img, origin=str(path))
    boxes, labels = read_labels(label_file, img.shape[1], img.shape[0], n_classes)
    return Frame(image=img, origin=str(path), boxes=boxes, labels=labels)


class ImageFolderSource:
    """Frames from the images in a folder (or its ``images/`` subfolder), in name order.

    Corrupt images and bad label files are skipped, logged (info) and counted in
    ``statistics()`` for the caller to report;
    they never stop the iteration.
    """

    def __init__(self, root: Path, n_classes: int) -> None:
        if not root.exists():
            raise CameraError(f"image folder {root}: does not exist")
        if not root.is_dir():
            raise CameraError(f"image folder {root}: is not a directory")
        self.name = str(root)
        self.n_classes = n_classes
        images_dir = root / "images" if (root / "images").is_dir() else root
        self.paths = sorted(p for p in images_dir.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not self.paths:
            raise CameraError(f"image folder {root}: contains no images "
                              f"({', '.join(IMAGE_SUFFIXES)})")
        self._frames = 0
        self._skipped = 0

    def __iter__(self) -> Iterator[Frame]:
        for path in self.paths:
            try:
                frame = load_frame(path, self.n_classes)
            except (CorruptImageError, LabelError) as e:
                self._skipped += 1
                log.info("skip_frame source=%s reason=%s", self.name, e)
                continue
            self._frames += 1
            yield frame

    def close(self) -> None:
        """Nothing to release; here for the ``CameraSource`` interface."""

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(frames=self._frames, skipped=self._skipped)

    def __enter__(self) -> ImageFolderSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
