"""The vehicle's bounded, on-disk buffer of labelled crops.

One small ``.npz`` chunk per frame under ``STATE/buffer/``, named by the time it was taken in,
written atomically: a crash loses at most the frame being written. Oldest chunks go first when
the buffer is over ``max_samples`` or a chunk is older than ``max_age_s``. A fixed share of
frames (by a hash of where the frame came from, so a restart keeps the split) is held out of
training to measure the vehicle's own accuracy. Frames never leave the vehicle.
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

log = logging.getLogger(__name__)

NAME = re.compile(r"(\d{20})-([0-9a-f]{16})-(\d+)-([th])\.npz")


@dataclass(frozen=True)
class Chunk:
    path: Path
    t_ns: int
    samples: int
    held_out: bool


class SampleBuffer:
    def __init__(self, root: Path, crop_size: int, max_samples: int, max_age_s: float,
                 held_out: float) -> None:
        self.root, self.size = root, crop_size
        self.max_samples, self.max_age_s, self.held_out_share = max_samples, max_age_s, held_out
        self.corrupt = 0
        self.version = 0  # bumped on every change: the learner reloads when it moves
        self._lock = threading.Lock()  # intake adds while the training thread loads
        # Chunks read so far: a reload reads only the chunks added since (each round's load
        # used to read every file again). Costs one more copy of the crops in memory.
        self._read: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
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

    def add(self, crops: CropSet, origin: str, now_ns: int | None = None) -> Chunk | None:
        """Keep one frame's labelled crops; None if it had none."""
        if len(crops) == 0:
            return None
        if crops.images.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"crops of shape {crops.images.shape[1:]}, expected "
                             f"{(self.size, self.size, 3)}")
        t = time.time_ns() if now_ns is None else now_ns
        if self.chunks and t <= self.chunks[-1].t_ns:
            t = self.chunks[-1].t_ns + 1  # names stay in order even if the clock steps back
        held = self.is_held_out(origin)
        tag = hashlib.sha256(origin.encode()).hexdigest()[:16]
        path = self.root / f"{t:020d}-{tag}-{len(crops)}-{'h' if held else 't'}.npz"
        buf = io.BytesIO()
        np.savez(buf, images=crops.images, labels=crops.labels.astype(np.int64))
        atomic_write_bytes(path, buf.getvalue(), mode=0o600)
        chunk = Chunk(path, t, len(crops), held)
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

    def load(self, held_out: bool) -> CropSet:
        """Every crop of one split, oldest first; unreadable chunks are dropped and counted."""
        with self._lock:
            chunks = [c for c in self.chunks if c.held_out == held_out]
            live = {c.path for c in self.chunks}
            self._read = {p: xy for p, xy in self._read.items() if p in live}
            known = dict(self._read)
        images, labels, fresh = [], [], {}
        for c in chunks:
            xy = known.get(c.path)
            if xy is None:
                if (xy := self._read_chunk(c)) is None:
                    continue
                fresh[c.path] = xy
            images.append(xy[0])
            labels.append(xy[1])
        with self._lock:  # remember what was read, unless it was evicted meanwhile
            live = {c.path for c in self.chunks}
            self._read.update((p, xy) for p, xy in fresh.items() if p in live)
        if not images:
            return CropSet(np.zeros((0, self.size, self.size, 3), np.uint8),
                           np.zeros((0,), np.int64))
        return CropSet(np.concatenate(images), np.concatenate(labels))

    def _read_chunk(self, c: Chunk) -> tuple[np.ndarray, np.ndarray] | None:
        """One chunk's crops and labels; None (and the chunk dropped) if it is corrupt."""
        try:
            with np.load(c.path, allow_pickle=False) as z:
                x, y = z["images"], z["labels"]
            if x.shape != (c.samples, self.size, self.size, 3) or y.shape != (c.samples,):
                raise ValueError(f"shapes {x.shape} and {y.shape}")
        except (OSError, ValueError, KeyError) as e:
            self.corrupt += 1
            log.warning("buffer_chunk_corrupt path=%s error=%s", c.path.name, e)
            with self._lock:
                if c in self.chunks:
                    self.chunks.remove(c)
                    self.version += 1
            c.path.unlink(missing_ok=True)
            return None
        return x.astype(np.uint8), y.astype(np.int64)
