"""``infer --draw``: frames with their detections, written as images or, per video, a video."""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from models.atomic import atomic_write_bytes
from models.detect_decode import Detections
from models.draw import draw
from models.frame import Frame

VIDEO_FPS = 10.0  # the rate of an annotated video when its source does not say


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120] or "frame"


class Drawer:
    """Writes annotated frames under one folder (checked writable before any work)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._videos: dict[str, cv2.VideoWriter] = {}
        self._written = 0

    def add(self, source: str, frame: Frame, dets: Detections, classes: tuple[str, ...]) -> None:
        picture = draw(frame.image, dets, classes)
        if source.startswith("video:") or "://" in source:
            self._video(source, picture.shape[1], picture.shape[0]).write(picture)
            return
        self._written += 1
        ok, jpg = cv2.imencode(".jpg", picture)
        assert ok, "OpenCV encodes any BGR uint8 image as JPEG"
        name = f"{self._written:05d}-{_safe(Path(frame.origin).stem or frame.origin)}.jpg"
        atomic_write_bytes(self.folder / name, jpg.tobytes())

    def _video(self, source: str, width: int, height: int) -> cv2.VideoWriter:
        if source not in self._videos:
            target = source.removeprefix("video:")
            name = f"video{target}" if target.isdigit() else _safe(Path(target).stem)
            path = self.folder / f"{name}.mp4"  # drive.mp4 -> DIR/drive.mp4, video:0 -> video0
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self._videos[source] = cv2.VideoWriter(str(path), fourcc, VIDEO_FPS,
                                                   (width, height))
        return self._videos[source]

    def close(self) -> None:
        for writer in self._videos.values():
            writer.release()
        self._videos.clear()
