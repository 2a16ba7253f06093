import numpy as np

from models.preprocess import MEAN_RGB, STD_RGB, crop, crops, to_input, whole_image


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_crop_is_square_and_centred():
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 45:55] = 255  # a tall white bar
    c = crop(img, (45, 40, 55, 60), 32)
    assert c.shape == (32, 32, 3)
    # Aspect is kept: the bar stays narrower than tall.
    cols = np.where(c[16, :, 0] > 128)[0]
    rows = np.where(c[:, 16, 0] > 128)[0]
    assert len(cols) < len(rows)
    assert abs(cols.mean() - 15.5) < 1.5 and abs(rows.mean() - 15.5) < 1.5


def test_crop_outside_and_on_edges():
    img = _image()
    for box in [(-30, -30, 10, 10), (150, 110, 200, 160), (0, 0, 160, 120), (500, 500, 510, 510),
                (10, 10, 10.5, 10.5)]:
        assert crop(img, box, 32).shape == (32, 32, 3)


def test_crops_and_whole_image_batch_shapes():
    img = _image()
    boxes = np.array([[0, 0, 20, 30], [50, 50, 90, 70]], np.float32)
    assert crops(img, boxes, 24).shape == (2, 24, 24, 3)
    assert whole_image(img, 32).shape == (1, 32, 32, 3)


def test_to_input_normalises_rgb():
    batch = np.zeros((1, 2, 2, 3), np.uint8)
    batch[..., 2] = 255  # red in BGR
    x = to_input(batch)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    assert np.allclose(x[0, 0], (1.0 - MEAN_RGB[0]) / STD_RGB[0])  # R channel first
    assert np.allclose(x[0, 2], (0.0 - MEAN_RGB[2]) / STD_RGB[2])


def test_to_input_equals_the_arithmetic_for_every_byte():
    values = np.arange(256, dtype=np.uint8)
    batch = np.stack([values, values[::-1], np.roll(values, 7)], axis=-1).reshape(2, 8, 16, 3)
    mean, std = np.array(MEAN_RGB, np.float32), np.array(STD_RGB, np.float32)
    expected = (batch[..., ::-1].astype(np.float32) * np.float32(1 / 255) - mean) / std
    np.testing.assert_array_equal(to_input(batch), expected.transpose(0, 3, 1, 2))
