"""OpenCV ``VideoCapture``: a camera device, a video file or a stream URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2

from agent.camera.source import CameraError, SourceStatistics
from models.frame import Frame

MAX_FAILED_READS = 30  # consecutive failed reads before a live device counts as gone


class VideoCaptureSource:
    """Unlabelled frames from OpenCV; ends at the end of a file or when a device stops."""

    def __init__(self, target: int | str, max_frames: int | None = None) -> None:
        self.name = f"video device {target}" if isinstance(target, int) else f"video {target}"
        if isinstance(target, str) and "://" not in target and not Path(target).is_file():
            raise CameraError(f"{self.name}: no such file")
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"{self.name}: cannot open (missing, busy or not a video)")
        self.max_frames = max_frames
        self._frames = 0
        self._skipped = 0

    def __iter__(self) -> Iterator[Frame]:
        failed = 0
        while self.max_frames is None or self._frames < self.max_frames:
            ok, img = self._cap.read()
            if not ok or img is None:
                failed += 1
                if failed >= MAX_FAILED_READS or self._frames + self._skipped == 0 or \
                        self._cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
                    return  # end of file, or a device that has gone away
                self._skipped += 1
                continue
            failed = 0
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            yield Frame(image=img, origin=f"{self.name}#{self._frames}")
            self._frames += 1

    def close(self) -> None:
        self._cap.release()

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(frames=self._frames, skipped=self._skipped)

    def __enter__(self) -> VideoCaptureSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
