"""The on-disk sample buffer: order, limits, corrupt chunks, and reloads that read only what is
new."""

import time

import numpy as np

from agent.learn.buffer import SampleBuffer
from models.data import CropSet
from models.detector import DetConfig
from models.family import Classifier, Detector
from models.frame import Frame
from models.net import NetConfig

SIZE = 8
CROPS = Classifier(NetConfig(input_size=SIZE))
FRAMES = Detector(DetConfig(width=32, height=16))
T0 = time.time_ns()  # chunks are named by when they came; older than max_age_s goes


def crops(label: int, n: int = 2) -> CropSet:
    return CropSet(np.full((n, SIZE, SIZE, 3), label, np.uint8), np.full((n,), label, np.int64))


def training_origin(buffer: SampleBuffer, k: int) -> str:
    """An origin the buffer keeps for training (not held out)."""
    return next(o for i in range(1000) if not buffer.is_held_out(o := f"frame-{k}-{i}"))


def test_loads_oldest_first_and_evicts_over_the_limit(tmp_path):
    buffer = SampleBuffer(tmp_path, CROPS, max_samples=6, max_age_s=3600, held_out=0.0)
    for k in range(5):
        buffer.add(crops(k), training_origin(buffer, k), now_ns=T0 + k)
    got = buffer.load(held_out=False)
    assert list(got.labels) == [2, 2, 3, 3, 4, 4]  # 6 samples kept, the oldest went
    assert len(list(tmp_path.iterdir())) == 3


def test_a_reload_reads_only_new_chunks_and_forgets_evicted_ones(tmp_path):
    buffer = SampleBuffer(tmp_path, CROPS, max_samples=4, max_age_s=3600, held_out=0.0)
    first = buffer.add(crops(1), training_origin(buffer, 1), now_ns=T0)
    assert first is not None
    assert list(buffer.load(held_out=False).labels) == [1, 1]
    # Were the first chunk read again, this would make it corrupt and drop it.
    first.path.write_bytes(b"not an npz any more")
    buffer.add(crops(2), training_origin(buffer, 2), now_ns=T0 + 1)
    assert list(buffer.load(held_out=False).labels) == [1, 1, 2, 2]
    assert buffer.corrupt == 0
    buffer.add(crops(3), training_origin(buffer, 3), now_ns=T0 + 2)  # evicts the first
    loaded = buffer.load(held_out=False)
    assert list(loaded.labels) == [2, 2, 3, 3]
    assert first.path not in buffer._read
    # What it remembers are views into what it loaded: the samples are held once.
    assert all(np.shares_memory(d.images, loaded.images) for d in buffer._read.values())


def test_a_corrupt_chunk_is_dropped_and_counted(tmp_path):
    buffer = SampleBuffer(tmp_path, CROPS, max_samples=100, max_age_s=3600, held_out=0.0)
    bad = buffer.add(crops(1), training_origin(buffer, 1), now_ns=T0)
    buffer.add(crops(2), training_origin(buffer, 2), now_ns=T0 + 1)
    assert bad is not None
    bad.path.write_bytes(b"\x00" * 10)
    assert list(buffer.load(held_out=False).labels) == [2, 2]
    assert buffer.corrupt == 1 and not bad.path.exists() and buffer.samples == 2


def test_held_out_frames_stay_out_of_training(tmp_path):
    buffer = SampleBuffer(tmp_path, CROPS, max_samples=10_000, max_age_s=3600, held_out=0.5)
    for k in range(40):
        buffer.add(crops(k % 8, 1), f"frame-{k}", now_ns=T0 + k)
    train, held = buffer.load(held_out=False), buffer.load(held_out=True)
    assert len(train) + len(held) == 40 and 0 < len(held) < 40
    assert buffer.counts() == (len(train), len(held))
    # The split follows the frame's origin, so a restart (a new buffer on the same folder)
    # keeps it.
    again = SampleBuffer(tmp_path, CROPS, max_samples=10_000, max_age_s=3600, held_out=0.5)
    assert again.counts() == buffer.counts()


def test_a_detector_keeps_whole_frames_with_their_boxes(tmp_path):
    buffer = SampleBuffer(tmp_path, FRAMES, max_samples=100, max_age_s=3600, held_out=0.0)
    image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)  # twice the size
    frame = Frame(image, "cam/1", np.array([[2, 4, 30, 30], [40, 2, 60, 28]], np.float32),
                  np.array([3, 5]), np.array([[0, 0, 4, 4]], np.float32))
    unlabelled = Frame(image, "cam/2")
    for k, f in enumerate((frame, unlabelled, frame)):
        buffer.add(FRAMES.of_frames([f]), training_origin(buffer, k), now_ns=T0 + k)
    again = SampleBuffer(tmp_path, FRAMES, max_samples=100, max_age_s=3600, held_out=0.0)
    got = again.load(held_out=False)  # read back from disk, not from memory
    assert len(got) == 2 and got.images.shape == (2, 16, 32, 3)  # the live frame gave nothing
    np.testing.assert_allclose(got.boxes[1], [[1, 2, 15, 15], [20, 1, 30, 14]])
    assert [list(lab) for lab in got.labels] == [[3, 5], [3, 5]]
    assert got.ignored[0].shape == (1, 4) and got.origins == ("cam/1", "cam/1")
    assert all(np.shares_memory(d.images, got.images) for d in again._read.values())


def test_chunks_of_another_family_are_dropped_as_corrupt(tmp_path):
    crop_buffer = SampleBuffer(tmp_path, CROPS, max_samples=100, max_age_s=3600, held_out=0.0)
    crop_buffer.add(crops(1), training_origin(crop_buffer, 1), now_ns=T0)
    frames = SampleBuffer(tmp_path, FRAMES, max_samples=100, max_age_s=3600, held_out=0.0)
    assert len(frames.load(held_out=False)) == 0
    assert frames.corrupt == 1 and frames.samples == 0
