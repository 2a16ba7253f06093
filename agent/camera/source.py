"""One interface over every camera: the sim's synthetic sensor, OpenCV capture, image folders.

A source is an iterator of ``Frame`` with ``close()`` and ``statistics()``; use it in a
``with`` block. ``open_source(spec)`` builds one from a string a person can type:

    video:0 | video:drive.mp4 | rtsp://...         OpenCV VideoCapture (device, file, stream)
    DIR                                            an image folder with YOLO labels
    SCHEME:...                                     a camera another package registers under
                                                   the ``swarmdrive.cameras`` entry-point group:
                                                   the simulator's ``sim:TOWN/WEATHER``

The vehicle does not need the simulator: it only finds the ``sim:`` scheme when the simulator
is installed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from models.frame import Frame

# OpenCV prints its own warnings (a truncated PNG, a missing device) straight to stderr; we
# report each problem ourselves, once, naming the file or device.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

CAMERA_SCHEMES = "swarmdrive.cameras"  # entry-point group: scheme -> open(spec, n_classes)
MAX_IMAGE_BYTES = 64 << 20  # a 4K PNG is ~25 MB; refuse to decode anything larger


class CameraError(Exception):
    """A source that cannot be opened or read; the message names it and the problem."""


class CorruptImageError(CameraError):
    """A file that is not a decodable image."""


@dataclass(frozen=True)
class SourceStatistics:
    """What a source has done so far."""

    frames: int  # frames yielded
    skipped: int  # inputs skipped because they were corrupt or unreadable


class CameraSource(Protocol):
    """What every camera source provides."""

    name: str

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def statistics(self) -> SourceStatistics: ...

    def __enter__(self) -> CameraSource: ...

    def __exit__(self, *exc: object) -> None: ...


def read_image(path: Path) -> np.ndarray:
    """Decode the image file at ``path`` as BGR uint8 or raise ``CorruptImageError``."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise CorruptImageError(f"{path}: {size} bytes is more than the {MAX_IMAGE_BYTES} "
                                    "an image may have")
        data = np.fromfile(path, np.uint8)
    except IsADirectoryError:
        raise CorruptImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise CorruptImageError(f"{path}: cannot read ({e.strerror})") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CorruptImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def scheme_opener(scheme: str) -> Callable[[str, int], CameraSource] | None:
    """The opener an installed package registers for ``scheme`` (``sim`` from the simulator)."""
    for ep in entry_points(group=CAMERA_SCHEMES, name=scheme):
        opener: Callable[[str, int], CameraSource] = ep.load()
        return opener
    return None


def open_source(spec: str, n_classes: int) -> CameraSource:
    """Open the camera named by ``spec`` (see the module docstring)."""
    # Imported here: OpenCV capture and folder scanning are only needed once a camera opens.
    from agent.camera.capture import VideoCaptureSource
    from agent.camera.folder import ImageFolderSource

    if spec.startswith("video:"):
        target = spec[6:]
        return VideoCaptureSource(int(target) if target.isdigit() else target)
    if "://" in spec:
        return VideoCaptureSource(spec)
    scheme, sep, _ = spec.partition(":")
    if sep and scheme.isidentifier() and len(scheme) > 1:
        opener = scheme_opener(scheme)
        if opener is None:
            raise CameraError(f"camera {spec!r}: no installed package provides the {scheme}: "
                              "scheme")
        return opener(spec, n_classes)
    return ImageFolderSource(Path(spec), n_classes)
