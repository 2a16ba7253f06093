"""The models the inference service serves: ONNX files under ``STATE/serve/models/``, named by
their sha256, and one pointer, ``STATE/serve/current.json``, naming the A/B pair: the ``active``
file and the ``standby`` (the one served before, kept for a rollback).

The learner (or its OTA task) installs: it writes the new file, then replaces the pointer
atomically. The server notices the new pointer, loads and checks the file by its hash, and
switches. A reader sees the old pointer or the new one, never half of either; after a crash at
any point both name files that are checked again when loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from models.atomic import atomic_write_bytes

POINTER = "current.json"
KEEP = 4  # model files kept: the pointer's two and the most recent others
MAX_POINTER_BYTES = 8192


class PointerError(Exception):
    """A pointer file that cannot be read or makes no sense; the message names it."""


@dataclass(frozen=True)
class Installed:
    file: str  # the ONNX file's name, under serve/models/
    sha256: str  # of the file's bytes: checked whenever the server loads it
    model_hash: str  # the swarm model's hash (its weights), as the chain names it
    version: int  # the round the model comes from, or the OTA release's version
    source: str  # "round", "release" or "genesis"


@dataclass(frozen=True)
class Pointer:
    active: Installed
    standby: Installed | None


def serve_dir(state_dir: Path) -> Path:
    return state_dir / "serve"


def write_model(state_dir: Path, onnx: bytes, model_hash: str, version: int,
                source: str) -> Installed:
    """Put ``onnx`` in its own file (a new file: the served ones are never touched)."""
    sha = hashlib.sha256(onnx).hexdigest()
    name = f"{sha}.onnx"
    atomic_write_bytes(serve_dir(state_dir) / "models" / name, onnx, mode=0o640)
    return Installed(name, sha, model_hash, version, source)


def point(state_dir: Path, active: Installed, standby: Installed | None) -> Pointer:
    """Make ``active`` the served model, ``standby`` its fallback; prune other old files."""
    if standby is not None and standby.sha256 == active.sha256:
        standby = None
    p = Pointer(active, standby)
    body = {"active": asdict(active), "standby": None if standby is None else asdict(standby)}
    atomic_write_bytes(serve_dir(state_dir) / POINTER, json.dumps(body, indent=1).encode(),
                       mode=0o640)
    _prune(serve_dir(state_dir) / "models", keep={e.file for e in (active, standby) if e})
    return p


def install(state_dir: Path, onnx: bytes, model_hash: str, version: int,
            source: str) -> Installed:
    """Write ``onnx`` and switch to it; what was active becomes the standby."""
    entry = write_model(state_dir, onnx, model_hash, version, source)
    now = pointer(state_dir)
    point(state_dir, entry, None if now is None else now.active)
    return entry


def pointer(state_dir: Path) -> Pointer | None:
    """The installed pair, or None before the first install."""
    path = serve_dir(state_dir) / POINTER
    try:
        raw = path.read_bytes()[:MAX_POINTER_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PointerError(f"model pointer {path}: cannot read it ({e.strerror})") from None
    try:
        d = json.loads(raw)
        active = _entry(d["active"])
        standby = None if d.get("standby") is None else _entry(d["standby"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise PointerError(f"model pointer {path}: malformed ({type(e).__name__}: {e})") from None
    for entry in (active, standby):
        if entry is not None and not re.fullmatch(r"[0-9a-f]{64}\.onnx", entry.file):
            raise PointerError(f"model pointer {path}: file {entry.file!r} is not a model name")
    return Pointer(active, standby)


def current(state_dir: Path) -> Installed | None:
    """The active model, or None before the first install."""
    p = pointer(state_dir)
    return None if p is None else p.active


def model_path(state_dir: Path, entry: Installed) -> Path:
    return serve_dir(state_dir) / "models" / entry.file


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _entry(d: dict[str, object]) -> Installed:
    return Installed(file=str(d["file"]), sha256=str(d["sha256"]),
                     model_hash=str(d["model_hash"]), version=int(d["version"]),  # type: ignore[call-overload]
                     source=str(d["source"]))


def _prune(models: Path, keep: set[str]) -> None:
    files = sorted(models.glob("*.onnx"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in [f for f in files if f.name not in keep][max(0, KEEP - len(keep)):]:
        old.unlink(missing_ok=True)
