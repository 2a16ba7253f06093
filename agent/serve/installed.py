"""The model the inference service serves: ONNX files under ``STATE/serve/models/`` and one
pointer, ``STATE/serve/current.json``, naming the file, its sha256 and its version.

The learner (or OTA) installs: it writes the ONNX file, then replaces the pointer atomically.
The server notices the new pointer, loads and checks the file by its hash, and switches. A
reader sees the old pointer or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from models.atomic import atomic_write_bytes

POINTER = "current.json"
KEEP = 3  # model files kept: the current one and the last two (a rollback needs one)
MAX_POINTER_BYTES = 4096


class PointerError(Exception):
    """A pointer file that cannot be read or makes no sense; the message names it."""


@dataclass(frozen=True)
class Installed:
    file: str  # the ONNX file's name, under serve/models/
    sha256: str  # of the file's bytes: checked whenever the server loads it
    model_hash: str  # the swarm model's hash (its weights), as the chain names it
    version: int  # the round the model comes from (or an OTA release's version)
    source: str  # "round", "ota" or "genesis"


def serve_dir(state_dir: Path) -> Path:
    return state_dir / "serve"


def install(state_dir: Path, onnx: bytes, model_hash: str, version: int,
            source: str) -> Installed:
    """Put ``onnx`` in place and point the server at it; prune old files."""
    models = serve_dir(state_dir) / "models"
    sha = hashlib.sha256(onnx).hexdigest()
    name = f"{sha}.onnx"
    atomic_write_bytes(models / name, onnx, mode=0o640)
    entry = Installed(name, sha, model_hash, version, source)
    atomic_write_bytes(serve_dir(state_dir) / POINTER,
                       json.dumps(asdict(entry), indent=1).encode(), mode=0o640)
    _prune(models, keep=name)
    return entry


def current(state_dir: Path) -> Installed | None:
    """The installed model, or None before the first install."""
    path = serve_dir(state_dir) / POINTER
    try:
        raw = path.read_bytes()[:MAX_POINTER_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PointerError(f"model pointer {path}: cannot read it ({e.strerror})") from None
    try:
        d = json.loads(raw)
        entry = Installed(file=str(d["file"]), sha256=str(d["sha256"]),
                          model_hash=str(d["model_hash"]), version=int(d["version"]),
                          source=str(d["source"]))
    except (ValueError, KeyError, TypeError) as e:
        raise PointerError(f"model pointer {path}: malformed ({type(e).__name__}: {e})") from None
    if not re.fullmatch(r"[0-9a-f]{64}\.onnx", entry.file):
        raise PointerError(f"model pointer {path}: file {entry.file!r} is not a model name")
    return entry


def model_path(state_dir: Path, entry: Installed) -> Path:
    return serve_dir(state_dir) / "models" / entry.file


def _prune(models: Path, keep: str) -> None:
    files = sorted(models.glob("*.onnx"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in [f for f in files if f.name != keep][KEEP - 1:]:
        old.unlink(missing_ok=True)
