"""``swarmdrive infer``: run an exported model on frames with ONNX Runtime.

A detector finds the objects in each frame; a crop classifier names every labelled box of a
frame (or a whole crop image). Either way one JSON line per object. For labelled frames a
detector's COCO AP goes to stderr, per frame and for all of them; ``--draw DIR`` writes the
frames with their boxes (an annotated video for a ``video:`` source).

A path that cannot be read gets one error line on stderr and makes the exit code non-zero; the
other paths are still done (the rule of ``agent.commands.sources``). ONNX Runtime, OpenCV,
pycocotools and numpy only: serving never imports torch, and neither does this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import add_command, float_range, int_range

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agent.camera.source import CameraSource
    from agent.commands.drawing import Drawer
    from models.detect_data import Truth
    from models.detect_decode import Detections
    from models.frame import Frame
    from models.runtime import OnnxClassifier, OnnxDetector

PRINT_SCORE = 0.3  # detections printed and drawn; AP is computed over every one


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "infer", "detect or classify objects with an exported model",
                    "Find the objects in frames with an exported detector, or name every "
                    "labelled box (or whole crop image) with a crop classifier; one JSON line "
                    "per object.")
    p.add_argument("--model", type=Path, required=True, help="ONNX file from 'swarmdrive export'")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="frames (with YOLO label files for AP), crop images, folders of either, "
                        "or a camera such as video:drive.mp4")
    p.add_argument("--threads", type=int_range(1, 256), default=1,
                   help="ONNX Runtime intra-op threads")
    p.add_argument("--min-score", type=float_range(0.0, 1.0), default=PRINT_SCORE,
                   help="detections below this score are not printed or drawn")
    p.add_argument("--draw", type=Path, metavar="DIR",
                   help="write each frame with its detections here (a video source: one video)")
    p.set_defaults(run=run)


def classify_frame(clf: OnnxClassifier, frame: Frame) -> list[dict[str, object]]:
    """One result per box, or one for the whole image when the frame has no labels."""
    from models.preprocess import crops, whole_image

    size, names = clf.info.input_size, clf.info.classes
    boxes: list[list[float] | None]
    truth: list[str | None]
    if len(frame.labels) == 0:
        batch, boxes, truth = whole_image(frame.image, size), [None], [None]
    else:
        batch = crops(frame.image, frame.boxes, size)
        boxes = [[round(float(v), 1) for v in b] for b in frame.boxes]
        truth = [names[i] for i in frame.labels]
    ids, scores = clf.classify(batch)
    out = []
    for box, t, i, s in zip(boxes, truth, ids.tolist(), scores.tolist(), strict=True):
        rec: dict[str, object] = {"path": frame.origin, "box": box, "class": names[i],
                                  "score": round(s, 4)}
        if t is not None:
            rec["label"] = t
        out.append(rec)
    return out


def emit(clf: OnnxClassifier, frame: Frame, total: int, correct: int) -> tuple[int, int]:
    """Print the frame's results; the running count of labelled boxes and correct ones."""
    for rec in classify_frame(clf, frame):
        print(json.dumps(rec))
        if "label" in rec:
            total += 1
            correct += rec["label"] == rec["class"]
    return total, correct


@dataclass
class Scores:
    """What a detector found in labelled frames, for the summary line."""

    detections: list[Detections] = field(default_factory=list)
    truths: list[Truth] = field(default_factory=list)


def detect_frame(det: OnnxDetector, frame: Frame, min_score: float, scores: Scores,
                 drawer: Drawer | None, source: str) -> None:
    """Print the frame's objects; score it if it has labels; draw it if asked."""
    from models.coco import coco_report
    from models.detect_data import Truth

    names = det.info.classes
    found = det.detect(frame.image)
    shown = found.above(min_score)
    for box, k, s in zip(shown.boxes.tolist(), shown.labels.tolist(), shown.scores.tolist(),
                         strict=True):
        print(json.dumps({"path": frame.origin, "box": [round(v, 1) for v in box],
                          "class": names[k], "score": round(s, 4)}))
    if len(frame.labels):
        truth = Truth.of(frame)
        r = coco_report([found], [truth], names)
        print(f"{frame.origin}: AP@0.5 {r.map50:.3f}, AP@0.5:0.95 {r.map50_95:.3f} "
              f"({r.objects} objects, {len(shown)} detections over {min_score})",
              file=sys.stderr)
        scores.detections.append(found)
        scores.truths.append(truth)
    if drawer is not None:
        drawer.add(source, frame, shown, names)


@contextlib.contextmanager
def frames_of(path: str, n_classes: int) -> Iterator[list[Frame] | CameraSource]:
    """The frames of a file, a folder or a camera spec (``video:drive.mp4``)."""
    from agent.camera.folder import ImageFolderSource, load_frame
    from agent.camera.source import open_source

    if Path(path).is_dir():
        with ImageFolderSource(Path(path), n_classes) as src:
            yield src
    elif Path(path).exists() or ":" not in path:
        yield [load_frame(Path(path), n_classes)]
    else:
        with open_source(path, n_classes) as cam:
            yield cam


def run(args: argparse.Namespace) -> int:
    from agent.camera.source import CameraError, CorruptImageError
    from agent.camera.yolo import LabelError
    from agent.commands.args import check_output_dir
    from agent.commands.drawing import Drawer
    from agent.exit_codes import ExitCode
    from models.coco import coco_report
    from models.runtime import OnnxDetector, open_model

    drawer = Drawer(check_output_dir(args.draw, "--draw")) if args.draw else None
    model = open_model(args.model, threads=args.threads)
    n_classes = len(model.info.classes)
    failed = correct = total = 0
    scores = Scores()
    for path in args.paths:
        try:
            with frames_of(path, n_classes) as frames:
                for frame in frames:
                    if isinstance(model, OnnxDetector):
                        detect_frame(model, frame, args.min_score, scores, drawer, path)
                    else:
                        total, correct = emit(model, frame, total, correct)
                skipped = 0 if isinstance(frames, list) else frames.statistics().skipped
            if skipped:
                print(f"swarmdrive: error: {path}: skipped {skipped} corrupt or unreadable "
                      "file(s)", file=sys.stderr)
                failed += 1
        except (CorruptImageError, LabelError, CameraError) as e:
            print(f"swarmdrive: error: {e}", file=sys.stderr)
            failed += 1
    if drawer is not None:
        drawer.close()
    if total:
        print(f"accuracy {correct}/{total} = {correct / total:.4f}", file=sys.stderr)
    if scores.truths:
        r = coco_report(scores.detections, scores.truths, model.info.classes)
        print(f"mAP@0.5 {r.map50:.4f}, mAP@0.5:0.95 {r.map50_95:.4f} over {r.frames} labelled "
              f"frame(s), {r.objects} objects", file=sys.stderr)
    return int(ExitCode.BAD_INPUT_FILE) if failed else 0
