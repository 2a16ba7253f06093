import numpy as np
import pytest

from agent.camera.folder import ImageFolderSource
from agent.camera.source import CameraError, open_source
from agent.cli import main
from sim.world import CLASSES


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames")
    assert main(["render", "--town", "Town02", "--weather", "WetNoon", "-n", "6", "--seed", "4",
                 "--out", str(out)]) == 0
    return out


def test_folder_reads_back_what_render_wrote(rendered):
    sim = list(open_source("sim:Town02/WetNoon?seed=4&n=6", len(CLASSES)))
    with ImageFolderSource(rendered, len(CLASSES)) as src:
        frames = list(src)
        assert src.statistics().frames == 6 and src.statistics().skipped == 0
    assert len(frames) == len(sim) == 6
    for a, b in zip(frames, sim, strict=True):
        assert np.array_equal(a.image, b.image)  # PNG is lossless
        assert a.labels.tolist() == b.labels.tolist()
        assert np.allclose(a.boxes, b.boxes, atol=0.01)


def test_corrupt_files_are_skipped_and_counted(rendered, tmp_path):
    for p in (rendered / "images").iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    src = ImageFolderSource(tmp_path, len(CLASSES))
    frames = list(src)
    assert len(frames) == 6
    assert src.statistics().skipped == 3


def test_bad_label_file_skips_that_frame(rendered, tmp_path):
    img = next((rendered / "images").iterdir())
    (tmp_path / img.name).write_bytes(img.read_bytes())
    (tmp_path / img.with_suffix(".txt").name).write_text("7 2.0 0.5 0.1 0.1\n")
    src = ImageFolderSource(tmp_path, len(CLASSES))
    assert list(src) == []
    assert src.statistics().skipped == 1


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(CameraError, match="contains no images"):
        ImageFolderSource(tmp_path, 8)
    with pytest.raises(CameraError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope", 8)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(CameraError, match="is not a directory"):
        ImageFolderSource(tmp_path / "file.png", 8)


def test_sim_spec_errors():
    with pytest.raises(CameraError, match="expected sim:TOWN/WEATHER"):
        open_source("sim:Town01", 8)
    with pytest.raises(CameraError, match="unknown option"):
        open_source("sim:Town01/ClearNoon?speed=3", 8)
