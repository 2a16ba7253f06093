import numpy as np
import pytest

from agent.camera.yolo import LabelError, format_labels, parse_labels


def test_round_trip():
    boxes = np.array([[10, 20, 50, 100], [0, 0, 320, 240]], np.float32)
    labels = np.array([3, 0])
    text = format_labels(boxes, labels, 320, 240)
    b, lab = parse_labels(text, 320, 240, 8, "x.txt")
    assert np.allclose(b, boxes, atol=0.01)
    assert lab.tolist() == [3, 0]


@pytest.mark.parametrize(("line", "problem"), [
    ("1 0.5 0.5 0.1", "expected 5 fields"),
    ("car 0.5 0.5 0.1 0.1", "not a YOLO label line"),
    ("9 0.5 0.5 0.1 0.1", "class 9 is outside 0..7"),
    ("1 0.5 1.5 0.1 0.1", "not inside 0..1"),
    ("1 0.5 0.5 0.0 0.1", "not inside 0..1"),
])
def test_bad_lines_name_the_file_and_line(line, problem):
    with pytest.raises(LabelError, match=problem) as e:
        parse_labels("0 0.5 0.5 0.2 0.2\n" + line, 100, 100, 8, "frame.txt")
    assert str(e.value).startswith("frame.txt:2:")
