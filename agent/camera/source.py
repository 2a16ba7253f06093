"""One interface over every camera: the sim's synthetic sensor, OpenCV capture, image folders.

A source is an iterator of ``Frame`` with ``close()`` and ``statistics()``; use it in a
``with`` block. ``open_source(spec)`` builds one from a string a person can type:

    sim:Town01/ClearNoon[?seed=1&start=0&n=100]   the simulator's camera
    video:0 | video:drive.mp4 | rtsp://...         OpenCV VideoCapture (device, file, stream)
    DIR                                            an image folder with YOLO labels
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

import cv2
import numpy as np

from agent.camera.frame import Frame

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


def open_source(spec: str, n_classes: int) -> CameraSource:
    """Open the camera named by ``spec`` (see the module docstring)."""
    # Imported here: the sim pulls in the renderer, which a vehicle without it never needs.
    from agent.camera.capture import VideoCaptureSource
    from agent.camera.folder import ImageFolderSource

    if spec.startswith("sim:"):
        from sim.sensor import SyntheticCamera

        where, _, query = spec[4:].partition("?")
        town, _, weather = where.partition("/")
        if not town or not weather:
            raise CameraError(f"camera {spec!r}: expected sim:TOWN/WEATHER")
        try:
            opts = {k: int(v) for k, v in parse_qsl(query, strict_parsing=bool(query))}
        except ValueError:
            raise CameraError(f"camera {spec!r}: options must be seed=, start= and n= integers") \
                from None
        unknown = set(opts) - {"seed", "start", "n"}
        if unknown:
            raise CameraError(f"camera {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
        return SyntheticCamera(town, weather, seed=opts.get("seed", 0),
                               start=opts.get("start", 0), n=opts.get("n"))
    if spec.startswith("video:"):
        target = spec[6:]
        return VideoCaptureSource(int(target) if target.isdigit() else target)
    if "://" in spec:
        return VideoCaptureSource(spec)
    return ImageFolderSource(Path(spec), n_classes)

