"""What a release's bytes must pass before they are installed: the chain's hash and size, the
metadata against the release and the chain, and a smoke test on the vehicle's own crops."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from chain.ledger import Release
from models.atomic import atomic_write_bytes
from models.errors import ModelFileError
from models.runtime import OnnxClassifier

SMOKE_CROPS = 32


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
                 classes: tuple[str, ...], input_size: int) -> OnnxClassifier:
    """Write ``data`` to ``path`` and load it with ONNX Runtime if its metadata names the
    release's round, that round's model on chain, our classes and our input size."""
    v = release.version
    atomic_write_bytes(path, data, mode=0o640)
    try:
        clf = OnnxClassifier(path, sha256=release.onnx_sha256.hex())
    except ModelFileError as e:
        raise ReleaseRejected("verify", f"release {v}: {e}") from None
    info = clf.info
    problems = []
    if info.round != release.source_round:
        problems.append(f"its metadata names round {info.round}, the release round "
                        f"{release.source_round}")
    if info.model_hash != chain_model_hash.hex():
        problems.append(f"its weights {info.model_hash[:12]} are not round "
                        f"{release.source_round}'s final model {chain_model_hash.hex()[:12]}")
    if info.classes != classes:
        problems.append(f"its classes {list(info.classes)} are not this vehicle's")
    if info.input_size != input_size:
        problems.append(f"its input size {info.input_size} is not {input_size}")
    if problems:
        raise ReleaseRejected("verify", f"release {v}: " + "; ".join(problems))
    return clf


def smoke_test(release: Release, clf: OnnxClassifier, crops: np.ndarray,
               latency_budget_ms: float) -> str:
    """Classify up to SMOKE_CROPS crops one at a time: right shapes, finite outputs, p99 within
    the budget. Returns a summary; raises ``ReleaseRejected``."""
    v, n_classes = release.version, len(clf.info.classes)
    ms = []
    for crop in crops[-SMOKE_CROPS:]:
        t0 = time.perf_counter()
        try:
            z = clf.logits(crop[None])
        except Exception as e:  # ORT's own error types
            raise ReleaseRejected("smoke", f"release {v}: inference failed ({e})") from None
        ms.append((time.perf_counter() - t0) * 1000)
        if z.shape != (1, n_classes):
            raise ReleaseRejected("smoke", f"release {v}: output shape {list(z.shape)}, "
                                  f"expected [1, {n_classes}]")
        if not np.isfinite(z).all():
            raise ReleaseRejected("smoke", f"release {v}: non-finite output on the vehicle's "
                                  "own crops")
    p99 = float(np.percentile(ms, 99)) if ms else 0.0
    if p99 > latency_budget_ms:
        raise ReleaseRejected("smoke", f"release {v}: p99 latency {p99:.1f} ms is over the "
                              f"{latency_budget_ms:g} ms budget")
    return f"{len(ms)} crops, p99 {p99:.2f} ms"
