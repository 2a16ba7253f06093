"""The detector: targets, decoding, COCO metrics (real pycocotools), training, ONNX and int8."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from models.coco import coco_report
from models.detect_data import MIN_BOX_PX, Augment, FrameSet, frames_to_set, geometric
from models.detect_decode import Detections, decode, local_maxima
from models.detect_eval import evaluate
from models.detect_loss import Targets, detection_loss, frame_targets
from models.detect_train import DETECTOR_TRAIN, run_steps
from models.detector import LIGHT, DetConfig, FrameNet
from models.errors import ModelFileError
from models.onnx_export import PARITY_TOLERANCE, export, to_onnx, torch_outputs
from models.quantize import quantize_int8
from models.runtime import OnnxClassifier, OnnxDetector
from models.train import make_optimizer
from sim.datasets import domains_frames
from sim.world import CLASSES

CFG = DetConfig()
BOXES = np.array([[40, 100, 90, 140], [200, 90, 206, 118], [150, 60, 160, 90],
                  [100, 120, 108, 130]], np.float32)  # the last is under MIN_BOX_PX tall
LABELS = np.array([0, 5, 6, 3], np.int64)
IGNORED = np.array([[280, 100, 300, 110]], np.float32)


@pytest.fixture(scope="module")
def frames() -> FrameSet:
    return domains_frames([("Town01", "ClearNoon"), ("Town10", "ClearNight")], seed=5,
                          frames_per_domain=12, width=CFG.width, height=CFG.height)


def perfect_maps(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps a perfect detector would give: high logits at the targets' peaks, exact boxes."""
    heat, box, weight, _ = frame_targets(boxes, labels, np.zeros((0, 4), np.float32),
                                         CFG.n_classes, CFG.grid, CFG.stride)
    logits = np.where(heat == 1.0, 8.0, -8.0).astype(np.float32)
    rows, cols = CFG.grid
    cy = (np.arange(rows)[:, None] + 0.5) * CFG.stride
    cx = (np.arange(cols)[None, :] + 0.5) * CFG.stride
    dist = np.stack([cx - box[0], cy - box[1], box[2] - cx, box[3] - cy]).astype(np.float32)
    return logits, np.where(weight > 0, dist, 0.0).astype(np.float32)


@pytest.mark.parametrize("cfg", [CFG, LIGHT], ids=["framenet", "light"])
def test_the_detector_stays_within_its_budget(cfg):
    model = FrameNet(cfg)
    assert model.num_parameters() <= 1_000_000
    heat, dist = model(torch.zeros(2, 3, cfg.height, cfg.width))
    assert heat.shape == (2, cfg.n_classes, *cfg.grid) and dist.shape == (2, 4, *cfg.grid)
    assert (dist >= 0).all()


def test_the_light_detector_is_the_same_network_with_separable_blocks():
    plain, light = FrameNet(CFG), FrameNet(LIGHT)
    assert light.num_parameters() < plain.num_parameters() / 4
    assert not any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in plain.modules())
    depthwise = [m for m in light.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == sum(LIGHT.depths) + 2 and all(m.groups == m.in_channels
                                                           for m in depthwise)


def test_targets_put_one_peak_per_object_and_keep_ignored_cells_out():
    heat, box, weight, ignore = frame_targets(BOXES, LABELS, IGNORED, CFG.n_classes, CFG.grid,
                                              CFG.stride)
    peaks = np.argwhere(heat == 1.0)
    assert sorted(peaks[:, 0].tolist()) == sorted(LABELS.tolist())
    for k, r, c in peaks:  # the peak cell regresses to its own object's box
        assert (box[:, r, c].tolist(), k) in list(zip(BOXES.tolist(), LABELS.tolist(),
                                                      strict=True))
    assert weight.sum() == pytest.approx(len(BOXES), rel=1e-5)  # each object sums to 1
    assert ignore[26, 72] and not ignore[0, 0]  # inside the ignored box (y 104, x 290) only
    assert not (ignore & (heat.max(axis=0) == 1.0)).any()


def test_decoding_a_perfect_map_gives_back_the_boxes_at_any_frame_size():
    logits, dist = perfect_maps(BOXES, LABELS)
    dets = decode(logits, dist, CFG.stride, (640, 480), (CFG.width, CFG.height))
    assert len(dets) == len(BOXES)
    order = np.argsort(dets.boxes[:, 0])
    expect = np.argsort(BOXES[:, 0])
    np.testing.assert_allclose(dets.boxes[order], BOXES[expect] * 2, atol=1e-3)
    assert dets.labels[order].tolist() == LABELS[expect].tolist()
    assert (dets.scores > 0.99).all()


def test_local_maxima_keep_one_cell_of_a_plateau_shoulder():
    heat = np.zeros((1, 5, 5), np.float32)
    heat[0, 2, 2], heat[0, 2, 3] = 1.0, 0.5
    assert np.argwhere(local_maxima(heat)[0] & (heat[0] > 0)).tolist() == [[2, 2]]


def test_coco_metrics_score_perfect_missing_and_ignored_detections(frames):
    data = frames.subset(range(6))
    assert data.objects() > 0
    perfect = [decode(*perfect_maps(b, k), CFG.stride, (CFG.width, CFG.height),
                      (CFG.width, CFG.height)) for b, k in zip(data.boxes, data.labels,
                                                              strict=True)]
    report = coco_report(perfect, data.truths(), CLASSES)
    assert report.map50 == pytest.approx(1.0) and report.map50_95 > 0.9
    # Dropping every other frame's detections loses recall, and the metric sees it.
    half = [d if i % 2 else d.above(2.0) for i, d in enumerate(perfect)]
    assert coco_report(half, data.truths(), CLASSES).map50 < 0.9


def test_an_ignored_region_absorbs_a_detection():
    data = FrameSet(np.zeros((1, CFG.height, CFG.width, 3), np.uint8), (BOXES,), (LABELS,),
                    (IGNORED,), ("test",))
    logits, dist = perfect_maps(BOXES, LABELS)
    clean = decode(logits, dist, CFG.stride, (CFG.width, CFG.height), (CFG.width, CFG.height))
    extra_box = np.concatenate([clean.boxes, IGNORED])
    on_ignored = Detections(extra_box, np.concatenate([clean.scores, [1.0]]).astype(np.float32),
                            np.concatenate([clean.labels, [0]]))
    elsewhere = Detections(np.concatenate([clean.boxes, [[0, 0, 20, 20]]]).astype(np.float32),
                           on_ignored.scores, on_ignored.labels)
    assert coco_report([on_ignored], data.truths(), CLASSES).map50 == pytest.approx(1.0)
    assert coco_report([elsewhere], data.truths(), CLASSES).map50 < 1.0


def test_small_or_hidden_objects_are_ignored_not_counted(frames):
    for boxes in frames.boxes:
        assert ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_PX).all()
    assert sum(len(i) for i in frames.ignored) > 0


def test_a_flip_and_zoom_move_the_boxes_with_the_pixels():
    img = np.zeros((CFG.height, CFG.width, 3), np.uint8)
    box = np.array([[40, 100, 90, 140]], np.float32)
    img[100:140, 40:90] = 255
    rng = np.random.default_rng(3)
    for _ in range(10):
        out, b, _, ign = geometric(img, box, LABELS[:1], np.zeros((0, 4), np.float32),
                                   Augment(), rng)
        for x0, y0, x1, y1 in np.concatenate([b, ign]):
            cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
            assert out[cy, cx].min() > 200  # the box's centre is still on the white patch


def test_a_few_steps_lower_the_loss_in_float32_and_in_bfloat16(frames):
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = FrameNet(CFG)
        opt = make_optimizer(model, DETECTOR_TRAIN)
        g = torch.Generator().manual_seed(0)
        cfg = replace(DETECTOR_TRAIN, steps=30, batch_size=8, bf16=bf16)
        losses[bf16] = run_steps(model, opt, frames, 0, 30, 30, cfg, g, Augment.none())
        assert np.mean(losses[bf16][-5:]) < 0.85 * np.mean(losses[bf16][:5])
        assert evaluate(model, frames, CLASSES).frames == len(frames)
        # bfloat16 is the arithmetic's only: the weights the swarm merges stay float32
        assert all(p.dtype == torch.float32 for p in model.parameters())
    # the same first batch through both precisions: close, but not the same arithmetic
    assert losses[True][0] != losses[False][0]
    assert losses[True][0] == pytest.approx(losses[False][0], rel=0.02)


def test_the_loss_has_gradients_for_both_heads(frames):
    model = FrameNet(CFG)
    x = torch.randn(2, 3, CFG.height, CFG.width)
    t = Targets.stack([frame_targets(BOXES, LABELS, IGNORED, CFG.n_classes, CFG.grid,
                                     CFG.stride)] * 2)
    loss, parts = detection_loss(*model(x), t, CFG.stride)
    loss.backward()
    assert parts["heat"] > 0 and parts["giou"] > 0
    assert model.heat.weight.grad is not None and model.box.weight.grad is not None
    assert model.heat.weight.grad.abs().sum() > 0 and model.box.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cfg", [CFG, LIGHT], ids=["framenet", "light"])
def test_onnx_and_int8_detectors_agree_with_torch(frames, tmp_path, cfg):
    torch.manual_seed(0)
    model = FrameNet(cfg).eval()
    fp32_path = tmp_path / "det.onnx"
    assert export(model, CLASSES, fp32_path, frames.images[:4]) <= PARITY_TOLERANCE
    det = OnnxDetector(fp32_path)
    assert det.info.task == "detect" and det.info.frame_size == (cfg.width, cfg.height)
    heat, dist = det.maps(frames.images[:3])
    ref = torch_outputs(model, frames.images[:3])
    assert np.abs(heat - ref[0]).max() <= PARITY_TOLERANCE
    assert np.abs(dist - ref[1]).max() <= PARITY_TOLERANCE
    big = np.repeat(np.repeat(frames.images[0], 2, axis=0), 2, axis=1)  # a 640x480 camera
    assert len(det.detect(big, min_score=0.0)) > 0
    int8 = tmp_path / "det8.onnx"
    quantize_int8(to_onnx(model, CLASSES), frames.images[:16], int8)
    q = OnnxDetector(int8)
    assert q.info.precision == "int8"
    graph = onnx.load(str(int8)).graph
    assert "QuantizeLinear" in {n.op_type for n in graph.node}
    # Pointwise convolutions run in int8 (weights through DequantizeLinear); the first, the
    # depthwise ones and the two heads keep fp32 weights.
    weights = {i.name for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    float_convs = [n for n in convs if n.input[1] in weights]
    depthwise = sum(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())
    assert len(float_convs) == 1 + depthwise + 2 and len(convs) > len(float_convs)
    assert graph.input[0].name in {n.input[0] for n in float_convs}
    qheat, _ = q.maps(frames.images[:3])
    assert np.corrcoef(qheat.ravel(), heat.ravel())[0, 1] > 0.95
    with pytest.raises(ModelFileError, match="'detect' model, not a 'classify'"):
        OnnxClassifier(fp32_path)


def test_frames_of_another_size_are_resized_with_their_boxes():
    from models.frame import Frame
    img = np.zeros((480, 640, 3), np.uint8)
    f = Frame(img, "big", BOXES * 2, LABELS, IGNORED * 2)
    s = frames_to_set([f], CFG.width, CFG.height)
    assert s.images.shape == (1, CFG.height, CFG.width, 3)
    counted = (BOXES[:, 3] - BOXES[:, 1]) >= MIN_BOX_PX
    np.testing.assert_allclose(s.boxes[0], BOXES[counted])
    assert len(s.ignored[0]) == 1 + int((~counted).sum())
