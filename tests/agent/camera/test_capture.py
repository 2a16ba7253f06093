import cv2
import numpy as np
import pytest

from agent.camera.capture import VideoCaptureSource
from agent.camera.source import CameraError, open_source
from sim.render import render_frame


def test_reads_a_video_file(tmp_path):
    path = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    sent = [render_frame(0, "Town01", "ClearNoon", i).image for i in range(12)]
    for img in sent:
        writer.write(img)
    writer.release()
    with open_source(f"video:{path}", 8) as src:
        got = list(src)
        assert src.statistics().frames == 12
    assert len(got) == 12
    assert got[0].image.shape == (240, 320, 3)
    # MJPG is lossy but close.
    assert np.abs(got[5].image.astype(int) - sent[5].astype(int)).mean() < 8
    assert got[3].origin.endswith("#3")


def test_max_frames(tmp_path):
    path = tmp_path / "d.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(10):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    assert len(list(VideoCaptureSource(str(path), max_frames=4))) == 4


def test_unreadable_device_and_files(tmp_path):
    with pytest.raises(CameraError, match="video device 97: cannot open"):
        VideoCaptureSource(97)
    with pytest.raises(CameraError, match="no such file"):
        VideoCaptureSource(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(CameraError, match="cannot open"):
        VideoCaptureSource(str(junk))
