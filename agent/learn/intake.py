"""Taking labelled frames in: watched image folders and cameras, into the sample buffer.

A watched folder is one a labelling pipeline keeps filling with images and YOLO label files
(beside each image, or in a sibling ``labels/``). An image is taken in once its label file is
there and neither has changed between two looks a poll apart; dot-names and ``.tmp``/``.part``
names are never looked at, so a pipeline that writes under such a name and renames is never
read half-written. Each image is taken once (the names taken are kept in the state folder);
a corrupt image or label file is skipped and counted, never retried.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from agent.camera.folder import IMAGE_SUFFIXES, load_frame
from agent.camera.source import CorruptImageError
from agent.camera.yolo import LabelError, label_path_for
from agent.learn.buffer import SampleBuffer
from models.atomic import atomic_write_bytes
from models.frame import Frame

log = logging.getLogger(__name__)

MAX_SEEN_BYTES = 64 << 20


class FolderWatch:
    """New labelled images in one folder, each taken once."""

    def __init__(self, name: str, root: Path, n_classes: int, seen_file: Path) -> None:
        self.name, self.root, self.n_classes, self.seen_file = name, root, n_classes, seen_file
        self.stats: Counter[str] = Counter()
        self._last: dict[str, tuple[int, int, int, int]] = {}  # name -> sizes and mtimes
        self.seen: set[str] = set()
        if seen_file.exists():
            self.seen = set(seen_file.read_text()[:MAX_SEEN_BYTES].split("\n")) - {""}

    def _images_dir(self) -> Path:
        return self.root / "images" if (self.root / "images").is_dir() else self.root

    def ready(self) -> list[Path]:
        """Images whose label file is there and which have not changed since the last look."""
        try:
            entries = sorted(self._images_dir().iterdir())
        except OSError as e:
            self.stats["folder_unreadable"] += 1
            log.warning("intake_folder_unreadable source=%s error=%s", self.name, e)
            return []
        now: dict[str, tuple[int, int, int, int]] = {}
        out = []
        for p in entries:
            if (p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES
                    or p.name in self.seen):
                continue
            label = label_path_for(p)
            if label is None:
                continue  # its label file has not landed yet
            try:
                a, b = p.stat(), label.stat()
            except OSError:
                continue  # renamed or removed while we looked
            now[p.name] = (a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns)
            if self._last.get(p.name) == now[p.name]:
                out.append(p)
        self._last = now
        return out

    def take(self, path: Path) -> Frame | None:
        """The frame at ``path``, marked as taken; None (counted) if it is corrupt."""
        self.seen.add(path.name)
        try:
            frame = load_frame(path, self.n_classes)
        except (CorruptImageError, LabelError) as e:
            self.stats["corrupt"] += 1
            log.warning("intake_skipped source=%s error=%s", self.name, e)
            return None
        self.stats["frames"] += 1
        return frame

    def save_seen(self) -> None:
        names = sorted(self.seen & {p.name for p in self._images_dir().iterdir()})
        self.seen = set(names)  # forget images the pipeline has removed
        atomic_write_bytes(self.seen_file, "\n".join(names).encode(), mode=0o600)


def poll_folder(watch: FolderWatch, buffer: SampleBuffer) -> int:
    """One look at the folder: take in what is ready; returns the samples added."""
    added = 0
    ready = watch.ready()
    for path in ready:
        frame = watch.take(path)
        if frame is not None:
            added += keep(buffer, frame, f"{watch.name}/{path.name}")
    if ready:
        watch.save_seen()
    return added


def keep(buffer: SampleBuffer, frame: Frame, origin: str) -> int:
    """A labelled frame's samples (its crops, or the frame) in the buffer; returns how many."""
    samples = buffer.family.of_frames([frame])
    buffer.add(samples, origin)
    return len(samples)


class CameraFeed:
    """Frames from a camera (a scheme such as the simulator's ``sim:``)."""

    def __init__(self, name: str, frames: Iterator[Frame], fps: float) -> None:
        self.name, self.frames, self.interval_s = name, frames, 1.0 / fps
        self.stats: Counter[str] = Counter()

    def next(self) -> Frame | None:
        """The camera's next frame, or None when it has ended."""
        frame = next(self.frames, None)
        self.stats["frames"] += frame is not None
        return frame


def open_feed(name: str, uri: str, n_classes: int, fps: float) -> CameraFeed:
    """The camera ``uri`` names (``agent.camera.source``); raises ``CameraError``."""
    from agent.camera.source import open_source

    return CameraFeed(name, iter(open_source(uri, n_classes)), fps)
