"""What a release's bytes must pass before they are installed: the chain's hash and size, the
metadata against the release and the chain, and a smoke test on the vehicle's own samples
(crops for a classifier, frames for a detector)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from chain.ledger import Release
from models.atomic import atomic_write_bytes
from models.errors import ModelFileError
from models.runtime import OnnxClassifier, OnnxDetector, open_model

SMOKE_SAMPLES = 32


class ReleaseRejected(Exception):
    """A release that failed a check; the message names the release, the check and why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def check_bytes(release: Release, data: bytes) -> None:
    """Exactly ``size`` bytes whose sha256 is the chain's."""
    v = release.version
    if len(data) != release.size:
        raise ReleaseRejected("verify", f"release {v}: {len(data)} bytes, the chain says "
                              f"{release.size}")
    if hashlib.sha256(data).digest() != release.onnx_sha256:
        raise ReleaseRejected("verify", f"release {v}: bytes do not match the chain's sha256")


def load_checked(release: Release, data: bytes, path: Path, chain_model_hash: bytes,
                 classes: tuple[str, ...], task: str,
                 image_shape: tuple[int, int]) -> OnnxClassifier | OnnxDetector:
    """Write ``data`` to ``path`` and load it with ONNX Runtime if its metadata names the
    release's round, that round's model on chain, our classes, our task ("detect" or
    "classify") and our input (height, width)."""
    v = release.version
    atomic_write_bytes(path, data, mode=0o640)
    try:
        net = open_model(path, sha256=release.onnx_sha256.hex())
    except ModelFileError as e:
        raise ReleaseRejected("verify", f"release {v}: {e}") from None
    info = net.info
    problems = []
    if info.round != release.source_round:
        problems.append(f"its metadata names round {info.round}, the release round "
                        f"{release.source_round}")
    if info.model_hash != chain_model_hash.hex():
        problems.append(f"its weights {info.model_hash[:12]} are not round "
                        f"{release.source_round}'s final model {chain_model_hash.hex()[:12]}")
    if info.classes != classes:
        problems.append(f"its classes {list(info.classes)} are not this vehicle's")
    if info.task != task:
        problems.append(f"it is a {info.task!r} model; this vehicle learns a {task!r} one")
    else:
        shape = info.frame_size[::-1] if task == "detect" else (info.input_size,) * 2
        if shape != image_shape:
            problems.append(f"its input (height, width) {shape} is not {image_shape}")
    if problems:
        raise ReleaseRejected("verify", f"release {v}: " + "; ".join(problems))
    return net


def smoke_test(release: Release, net: OnnxClassifier | OnnxDetector, samples: np.ndarray,
               latency_budget_ms: float) -> str:
    """Run up to SMOKE_SAMPLES crops or frames through the model one at a time: right shapes,
    finite outputs, p99 within the budget. Returns a summary; raises ``ReleaseRejected``."""
    v, n_classes = release.version, len(net.info.classes)
    ms = []
    for sample in samples[-SMOKE_SAMPLES:]:
        t0 = time.perf_counter()
        try:
            outputs = (net.maps(sample[None]) if isinstance(net, OnnxDetector)
                       else (net.logits(sample[None]),))
        except Exception as e:  # ORT's own error types
            raise ReleaseRejected("smoke", f"release {v}: inference failed ({e})") from None
        ms.append((time.perf_counter() - t0) * 1000)
        want: list[tuple[int, ...]] = [(1, n_classes)]
        if isinstance(net, OnnxDetector):
            rows, cols = (n // net.info.stride for n in net.info.frame_size[::-1])
            want = [(1, n_classes, rows, cols), (1, 4, rows, cols)]
        if [o.shape for o in outputs] != want:
            raise ReleaseRejected("smoke", f"release {v}: output shapes "
                                  f"{[list(o.shape) for o in outputs]}, expected "
                                  f"{[list(w) for w in want]}")
        if not all(np.isfinite(o).all() for o in outputs):
            raise ReleaseRejected("smoke", f"release {v}: non-finite output on the vehicle's "
                                  "own samples")
    p99 = float(np.percentile(ms, 99)) if ms else 0.0
    if p99 > latency_budget_ms:
        raise ReleaseRejected("smoke", f"release {v}: p99 latency {p99:.1f} ms is over the "
                              f"{latency_budget_ms:g} ms budget")
    kind = "frames" if isinstance(net, OnnxDetector) else "crops"
    return f"{len(ms)} {kind}, p99 {p99:.2f} ms"
