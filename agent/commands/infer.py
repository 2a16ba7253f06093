"""``swarmdrive infer``: classify crops, or every labelled box of full frames, with ONNX Runtime.

Prints one JSON line per classified object. A path that cannot be read gets one error line
on stderr and makes the exit code non-zero; the other paths are still classified (the rule
of ``agent.commands.sources``). ONNX Runtime, OpenCV and numpy only: serving never imports
torch, and neither does this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import add_command, int_range

if TYPE_CHECKING:
    from models.frame import Frame
    from models.runtime import OnnxClassifier


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "infer", "classify images with an exported ONNX model",
                    "Classify every labelled box of full frames, or whole crop images, with an "
                    "exported model; one JSON line per object.")
    p.add_argument("--model", type=Path, required=True, help="ONNX file from 'swarmdrive export'")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="crop images, frames with YOLO label files, or folders of either")
    p.add_argument("--threads", type=int_range(1, 256), default=1,
                   help="ONNX Runtime intra-op threads")
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


def run(args: argparse.Namespace) -> int:
    from agent.camera.folder import ImageFolderSource, load_frame
    from agent.camera.source import CorruptImageError
    from agent.camera.yolo import LabelError
    from agent.exit_codes import ExitCode
    from models.runtime import OnnxClassifier

    clf = OnnxClassifier(args.model, threads=args.threads)
    n_classes = len(clf.info.classes)
    failed = 0
    correct = total = 0
    for path in args.paths:
        if path.is_dir():
            with ImageFolderSource(path, n_classes) as src:
                for frame in src:
                    total, correct = emit(clf, frame, total, correct)
                skipped = src.statistics().skipped
            if skipped:
                print(f"swarmdrive: error: {path}: skipped {skipped} corrupt or unreadable "
                      "file(s)", file=sys.stderr)
                failed += 1
            continue
        try:
            frame = load_frame(path, n_classes)
        except (CorruptImageError, LabelError) as e:
            print(f"swarmdrive: error: {e}", file=sys.stderr)
            failed += 1
            continue
        total, correct = emit(clf, frame, total, correct)
    if total:
        print(f"accuracy {correct}/{total} = {correct / total:.4f}", file=sys.stderr)
    return int(ExitCode.BAD_INPUT_FILE) if failed else 0



