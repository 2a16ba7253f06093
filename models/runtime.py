"""Serving an exported model with ONNX Runtime: load, validate the metadata, then classify
crops (``OnnxClassifier``) or detect objects in frames (``OnnxDetector``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from models.detect_decode import MIN_SCORE, Detections, decode
from models.errors import ModelFileError
from models.onnx_format import (
    BOX_NAME,
    FRAMES_NAME,
    HEAT_NAME,
    INPUT_NAME,
    META_FORMAT,
    META_PREFIX,
    OUTPUT_NAME,
)
from models.preprocess import frame_input, to_input

MAX_MODEL_BYTES = 64 << 20  # CropNet's ONNX is well under 1 MB


@dataclass(frozen=True)
class ModelInfo:
    classes: tuple[str, ...]
    input_size: int
    model_hash: str
    precision: str
    round: int | None = None  # the swarm round it comes from, stamped on OTA releases
    task: str = "classify"  # or "detect"
    frame_size: tuple[int, int] = (0, 0)  # a detector's input (width, height)
    stride: int = 0  # a detector's output stride


def read_info(proto: onnx.ModelProto, path: Path) -> ModelInfo:
    meta = {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props
            if p.key.startswith(META_PREFIX)}
    if meta.get("format") != META_FORMAT:
        raise ModelFileError(f"model {path}: no swarmdrive metadata (not exported by "
                             "'swarmdrive export')")
    try:
        classes = tuple(json.loads(meta["classes"]))
        task = meta.get("task", "classify")
        detect = task == "detect"
        return ModelInfo(
            classes=classes, input_size=0 if detect else int(meta["input_size"]),
            model_hash=meta["model_hash"], precision=meta.get("precision", "fp32"),
            round=int(meta["round"]) if "round" in meta else None, task=task,
            frame_size=((int(meta["input_width"]), int(meta["input_height"])) if detect
                        else (0, 0)),
            stride=int(meta["stride"]) if detect else 0)
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"model {path}: malformed swarmdrive metadata ({e})") from None


def load_file(path: Path) -> tuple[bytes, onnx.ModelProto]:
    """A model file's bytes and graph, refusing what is missing, huge or not ONNX."""
    if not path.is_file():
        raise ModelFileError(f"model {path}: no such file")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ModelFileError(f"model {path}: larger than {MAX_MODEL_BYTES} bytes")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as e:  # protobuf raises its own DecodeError and others
        raise ModelFileError(f"model {path}: not an ONNX model ({type(e).__name__})") from None
    return data, proto


class OnnxModel:
    """An ONNX Runtime session for a swarmdrive model, loaded, hashed and probed."""

    task = ""  # what the subclass serves; a file of another task is refused

    def __init__(self, path: Path, threads: int = 1, sha256: str | None = None,
                 loaded: tuple[bytes, onnx.ModelProto] | None = None) -> None:
        """Load and check ``path``; with ``sha256`` (hex), only if its bytes have that hash.

        ``loaded`` is what ``load_file`` already read (``open_model`` reads a file once).
        """
        path = Path(path)
        data, proto = loaded or load_file(path)
        self.sha256 = hashlib.sha256(data).hexdigest()
        if sha256 is not None and self.sha256 != sha256.lower():
            raise ModelFileError(f"model {path}: its sha256 is not the expected {sha256[:16]}…")
        self.info = read_info(proto, path)
        if self.info.task != self.task:
            raise ModelFileError(f"model {path}: a {self.info.task!r} model, not a {self.task!r} "
                                 "one")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise ModelFileError(f"model {path}: ONNX Runtime cannot load it "
                                 f"({str(e).splitlines()[0][:160]})") from None
        self.path = path
        self._check_signature()

    def _check_signature(self) -> None:
        raise NotImplementedError


class OnnxClassifier(OnnxModel):
    """A swarmdrive crop classifier."""

    task = "classify"

    def _check_signature(self) -> None:
        """Refuse a model whose graph does not take crops and give one logit per class.

        Metadata can be copied onto any graph; the tensors cannot lie, so a probe run checks
        what the session really returns.
        """
        where = f"model {self.path}"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ModelFileError(f"{where}: expects inputs {[i.name for i in inputs]} and gives "
                                 f"{[o.name for o in outputs]}, not {INPUT_NAME!r} -> "
                                 f"{OUTPUT_NAME!r}")
        s = self.info.input_size
        if not 4 <= s <= 1024:
            raise ModelFileError(f"{where}: metadata input_size {s} is outside 4..1024")
        try:
            probe = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, 3, s, s),
                                                                           np.float32)})[0]
        except Exception as e:  # ORT raises its own types for shape and type mismatches
            raise ModelFileError(f"{where}: does not take (N, 3, {s}, {s}) float32 crops "
                                 f"({str(e).splitlines()[0][:160]})") from None
        if probe.shape != (1, len(self.info.classes)):
            raise ModelFileError(f"{where}: gives outputs of shape {list(probe.shape)} for one "
                                 f"crop, but its metadata lists {len(self.info.classes)} classes")

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """(N, C) logits for (N, S, S, 3) uint8 BGR crops."""
        if len(crops) == 0:
            return np.zeros((0, len(self.info.classes)), np.float32)
        out: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: to_input(crops)})[0]
        return out

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids and softmax confidences of each crop."""
        z = self.logits(crops)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return p.argmax(axis=1), p.max(axis=1)


class OnnxDetector(OnnxModel):
    """A swarmdrive frame detector: frames in, objects out (decoded in numpy)."""

    task = "detect"

    def _check_signature(self) -> None:
        """Refuse a model whose graph does not take frames and give the two maps it should."""
        where = f"model {self.path}"
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [FRAMES_NAME] or not {HEAT_NAME, BOX_NAME} <= set(outputs):
            raise ModelFileError(f"{where}: expects inputs {inputs} and gives {outputs}, not "
                                 f"{FRAMES_NAME!r} -> {HEAT_NAME!r}, {BOX_NAME!r}")
        (w, h), stride = self.info.frame_size, self.info.stride
        if not (16 <= w <= 4096 and 16 <= h <= 4096 and stride in (1, 2, 4, 8, 16, 32)
                and w % stride == 0 and h % stride == 0):
            raise ModelFileError(f"{where}: metadata frame size {w}x{h} / stride {stride} is "
                                 "not usable")
        try:
            heat, box = self.session.run([HEAT_NAME, BOX_NAME],
                                         {FRAMES_NAME: np.zeros((1, 3, h, w), np.float32)})
        except Exception as e:  # ORT raises its own types for shape and type mismatches
            raise ModelFileError(f"{where}: does not take (N, 3, {h}, {w}) float32 frames "
                                 f"({str(e).splitlines()[0][:160]})") from None
        grid = (h // stride, w // stride)
        if heat.shape != (1, len(self.info.classes), *grid) or box.shape != (1, 4, *grid):
            raise ModelFileError(f"{where}: gives maps of shapes {list(heat.shape)} and "
                                 f"{list(box.shape)}, not (1, {len(self.info.classes)}, "
                                 f"{grid[0]}, {grid[1]}) and (1, 4, {grid[0]}, {grid[1]})")

    def maps(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (N, C, R, W) heatmap logits and (N, 4, R, W) distances for network-size frames."""
        heat, box = self.session.run([HEAT_NAME, BOX_NAME], {FRAMES_NAME: to_input(frames)})
        return heat, box

    def detect(self, image: np.ndarray, min_score: float = MIN_SCORE) -> Detections:
        """The objects in one (H, W, 3) uint8 BGR frame of any size, in its own pixels."""
        size = self.info.frame_size
        heat, box = self.maps(frame_input(image, size))
        h, w = image.shape[:2]
        return decode(heat[0], box[0], self.info.stride, (w, h), size, min_score=min_score)


def open_model(path: Path, threads: int = 1,
               sha256: str | None = None) -> OnnxClassifier | OnnxDetector:
    """Whichever kind of model ``path`` holds, as its metadata's ``task`` says; with
    ``sha256``, only if its bytes have that hash."""
    path = Path(path)
    loaded = load_file(path)
    kind = OnnxDetector if read_info(loaded[1], path).task == "detect" else OnnxClassifier
    return kind(path, threads, sha256=sha256, loaded=loaded)
