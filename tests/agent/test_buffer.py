"""The on-disk sample buffer: order, limits, corrupt chunks, and reloads that read only what is
new."""

import time

import numpy as np

from agent.learn.buffer import SampleBuffer
from models.data import CropSet

SIZE = 8
T0 = time.time_ns()  # chunks are named by when they came; older than max_age_s goes


def crops(label: int, n: int = 2) -> CropSet:
    return CropSet(np.full((n, SIZE, SIZE, 3), label, np.uint8), np.full((n,), label, np.int64))


def training_origin(buffer: SampleBuffer, k: int) -> str:
    """An origin the buffer keeps for training (not held out)."""
    return next(o for i in range(1000) if not buffer.is_held_out(o := f"frame-{k}-{i}"))


def test_loads_oldest_first_and_evicts_over_the_limit(tmp_path):
    buffer = SampleBuffer(tmp_path, SIZE, max_samples=6, max_age_s=3600, held_out=0.0)
    for k in range(5):
        buffer.add(crops(k), training_origin(buffer, k), now_ns=T0 + k)
    got = buffer.load(held_out=False)
    assert list(got.labels) == [2, 2, 3, 3, 4, 4]  # 6 samples kept, the oldest went
    assert len(list(tmp_path.iterdir())) == 3


def test_a_reload_reads_only_new_chunks_and_forgets_evicted_ones(tmp_path):
    buffer = SampleBuffer(tmp_path, SIZE, max_samples=4, max_age_s=3600, held_out=0.0)
    first = buffer.add(crops(1), training_origin(buffer, 1), now_ns=T0)
    assert first is not None
    assert list(buffer.load(held_out=False).labels) == [1, 1]
    # Were the first chunk read again, this would make it corrupt and drop it.
    first.path.write_bytes(b"not an npz any more")
    buffer.add(crops(2), training_origin(buffer, 2), now_ns=T0 + 1)
    assert list(buffer.load(held_out=False).labels) == [1, 1, 2, 2]
    assert buffer.corrupt == 0
    buffer.add(crops(3), training_origin(buffer, 3), now_ns=T0 + 2)  # evicts the first
    assert list(buffer.load(held_out=False).labels) == [2, 2, 3, 3]
    assert first.path not in buffer._read


def test_a_corrupt_chunk_is_dropped_and_counted(tmp_path):
    buffer = SampleBuffer(tmp_path, SIZE, max_samples=100, max_age_s=3600, held_out=0.0)
    bad = buffer.add(crops(1), training_origin(buffer, 1), now_ns=T0)
    buffer.add(crops(2), training_origin(buffer, 2), now_ns=T0 + 1)
    assert bad is not None
    bad.path.write_bytes(b"\x00" * 10)
    assert list(buffer.load(held_out=False).labels) == [2, 2]
    assert buffer.corrupt == 1 and not bad.path.exists() and buffer.samples == 2


def test_held_out_frames_stay_out_of_training(tmp_path):
    buffer = SampleBuffer(tmp_path, SIZE, max_samples=10_000, max_age_s=3600, held_out=0.5)
    for k in range(40):
        buffer.add(crops(k % 8, 1), f"frame-{k}", now_ns=T0 + k)
    train, held = buffer.load(held_out=False), buffer.load(held_out=True)
    assert len(train) + len(held) == 40 and 0 < len(held) < 40
    assert buffer.counts() == (len(train), len(held))
    # The split follows the frame's origin, so a restart (a new buffer on the same folder)
    # keeps it.
    again = SampleBuffer(tmp_path, SIZE, max_samples=10_000, max_age_s=3600, held_out=0.5)
    assert again.counts() == buffer.counts()
