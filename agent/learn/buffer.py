"""The vehicle's bounded, on-disk buffer of labelled samples: crops for the classifier, whole
frames with their boxes for the detector (``ModelFamily.of_frames`` makes them).

One small ``.npz`` chunk per frame under ``STATE/buffer/``, named by the time it was taken in,
written atomically: a crash loses at most the frame being written. Oldest chunks go first when
the buffer is over ``max_samples`` (crops or frames) or a chunk is older than ``max_age_s``. A
fixed share of frames (by a hash of where the frame came from, so a restart keeps the split) is
held out of training to measure the vehicle's own accuracy. Frames never leave the vehicle.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.atomic import atomic_write_bytes
from models.data import CropSet
from models.detect_data import FrameSet
from models.family import Data, ModelFamily

log = logging.getLogger(__name__)

NAME = re.compile(r"(\d{20})-([0-9a-f]{16})-(\d+)-([th])\.npz")


@dataclass(frozen=True)
class Chunk:
    path: Path
    t_ns: int
    samples: int
    held_out: bool


def to_arrays(data: Data) -> dict[str, np.ndarray]:
    """A chunk's arrays: crops and labels, or frames with their boxes laid end to end."""
    if isinstance(data, CropSet):
        return {"images": data.images, "labels": data.labels.astype(np.int64)}
    return {"images": data.images,
            "boxes": np.concatenate([*data.boxes, np.zeros((0, 4), np.float32)]),
            "labels": np.concatenate([*data.labels, np.zeros((0,), np.int64)]),
            "ignored": np.concatenate([*data.ignored, np.zeros((0, 4), np.float32)]),
            "n_boxes": np.array([len(b) for b in data.boxes], np.int64),
            "n_ignored": np.array([len(b) for b in data.ignored], np.int64),
            "origins": np.array(data.origins, dtype=np.str_)}


def from_arrays(z: dict[str, np.ndarray], family: ModelFamily, samples: int) -> Data:
    """The samples of a chunk's arrays; ``ValueError`` if they are not what ``family`` keeps."""
    x = z["images"]
    if x.shape != (samples, *family.image_shape, 3):
        raise ValueError(f"images of shape {x.shape}, expected "
                         f"{(samples, *family.image_shape, 3)}")
    labels = z["labels"].astype(np.int64)
    if family.task == "classify":
        if labels.shape != (samples,):
            raise ValueError(f"labels of shape {labels.shape}, expected ({samples},)")
        return CropSet(x.astype(np.uint8), labels)
    n_boxes, n_ignored = z["n_boxes"], z["n_ignored"]
    boxes, ignored, origins = z["boxes"], z["ignored"], z["origins"]
    if (n_boxes.shape != (samples,) or n_ignored.shape != (samples,)
            or origins.shape != (samples,) or labels.shape != (int(n_boxes.sum()),)
            or boxes.shape != (len(labels), 4) or ignored.shape != (int(n_ignored.sum()), 4)):
        raise ValueError("box arrays do not match their counts")
    cut_b, cut_i = np.cumsum(n_boxes)[:-1], np.cumsum(n_ignored)[:-1]
    return FrameSet(x.astype(np.uint8), tuple(np.split(boxes.astype(np.float32), cut_b)),
                    tuple(np.split(labels, cut_b)),
                    tuple(np.split(ignored.astype(np.float32), cut_i)),
                    tuple(str(o) for o in origins))


class SampleBuffer:
    def __init__(self, root: Path, family: ModelFamily, max_samples: int, max_age_s: float,
                 held_out: float) -> None:
        self.root, self.family = root, family
        self.max_samples, self.max_age_s, self.held_out_share = max_samples, max_age_s, held_out
        self.corrupt = 0
        self.version = 0  # bumped on every change: the learner reloads when it moves
        self._lock = threading.Lock()  # intake adds while the training thread loads
        # Chunks read so far: a reload reads only the chunks added since (each round's load
        # used to read every file again). Each is a view into the last set loaded, so the
        # samples are held once, not twice (2 x 115 MB for 500 frames).
        self._read: dict[Path, Data] = {}
        root.mkdir(parents=True, exist_ok=True)
        self.chunks: list[Chunk] = sorted(self._scan(), key=lambda c: c.t_ns)
        self.evict()

    def _scan(self) -> list[Chunk]:
        out = []
        for p in self.root.iterdir():
            m = NAME.fullmatch(p.name)
            if m is None:
                if p.name.endswith(".tmp"):  # a write a crash interrupted
                    p.unlink(missing_ok=True)
                continue
            out.append(Chunk(p, int(m[1]), int(m[3]), m[4] == "h"))
        return out

    @property
    def samples(self) -> int:
        return sum(c.samples for c in self.chunks)

    def counts(self) -> tuple[int, int]:
        """(training samples, held-out samples)."""
        held = sum(c.samples for c in self.chunks if c.held_out)
        return self.samples - held, held

    def is_held_out(self, origin: str) -> bool:
        h = int.from_bytes(hashlib.sha256(origin.encode()).digest()[:8], "big")
        return h / 2**64 < self.held_out_share

    def add(self, samples: Data, origin: str, now_ns: int | None = None) -> Chunk | None:
        """Keep one frame's samples; None if it gave none."""
        if len(samples) == 0:
            return None
        if samples.images.shape[1:] != (*self.family.image_shape, 3):
            raise ValueError(f"samples of shape {samples.images.shape[1:]}, expected "
                             f"{(*self.family.image_shape, 3)}")
        t = time.time_ns() if now_ns is None else now_ns
        if self.chunks and t <= self.chunks[-1].t_ns:
            t = self.chunks[-1].t_ns + 1  # names stay in order even if the clock steps back
        held = self.is_held_out(origin)
        tag = hashlib.sha256(origin.encode()).hexdigest()[:16]
        path = self.root / f"{t:020d}-{tag}-{len(samples)}-{'h' if held else 't'}.npz"
        buf = io.BytesIO()
        np.savez(buf, **to_arrays(samples))  # type: ignore[arg-type]
        atomic_write_bytes(path, buf.getvalue(), mode=0o600)
        chunk = Chunk(path, t, len(samples), held)
        with self._lock:
            self.chunks.append(chunk)
            self.version += 1
        self.evict(t)
        return chunk

    def evict(self, now_ns: int | None = None) -> int:
        """Drop the oldest chunks over the limits; returns how many samples went."""
        now = time.time_ns() if now_ns is None else now_ns
        oldest_kept = now - int(self.max_age_s * 1e9)
        with self._lock:
            total, dropped = self.samples, 0
            while self.chunks and (total > self.max_samples
                                   or self.chunks[0].t_ns < oldest_kept):
                c = self.chunks.pop(0)
                c.path.unlink(missing_ok=True)
                total -= c.samples
                dropped += c.samples
            self.version += dropped > 0
        return dropped

    def load(self, held_out: bool) -> Data:
        """Every sample of one split, oldest first; unreadable chunks are dropped and counted."""
        with self._lock:
            chunks = [c for c in self.chunks if c.held_out == held_out]
            live = {c.path for c in self.chunks}
            self._read = {p: xy for p, xy in self._read.items() if p in live}
            known = dict(self._read)
        parts: list[tuple[Path, Data]] = []
        for c in chunks:
            data = known.get(c.path)
            if data is None and (data := self._read_chunk(c)) is None:
                continue
            parts.append((c.path, data))
        loaded = self.family.concat([d for _, d in parts])
        with self._lock:  # remember what was read, unless it was evicted meanwhile
            live = {c.path for c in self.chunks}
            start = 0
            for path, data in parts:
                if path in live:
                    self._read[path] = loaded.window(start, start + len(data))
                start += len(data)
        return loaded

    def _read_chunk(self, c: Chunk) -> Data | None:
        """One chunk's samples; None (and the chunk dropped) if it is corrupt, or holds
        another family's samples (a vehicle moved from crops to frames)."""
        try:
            with np.load(c.path, allow_pickle=False) as z:
                data = from_arrays(dict(z), self.family, c.samples)
        except (OSError, ValueError, KeyError) as e:
            self.corrupt += 1
            log.warning("buffer_chunk_corrupt path=%s error=%s", c.path.name, e)
            with self._lock:
                if c in self.chunks:
                    self.chunks.remove(c)
                    self.version += 1
            c.path.unlink(missing_ok=True)
            return None
        return data
