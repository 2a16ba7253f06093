"""serve-v1 wire format (docs/spec/serve-v1.md): pure encoding and decoding, no I/O.

Every message is a 4-byte big-endian length, then that many bytes. A request is a 20-byte
header and raw BGR pixels (plus boxes for a frame); an answer is a UTF-8 JSON object.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAGIC = b"SDSV"
VERSION = 1
LENGTH = struct.Struct(">I")
HEADER = struct.Struct(">4sBBHIHHHBx")  # magic version kind flags id count height width channels
BOX = struct.Struct(">4f")
MAX_REQUEST = 64 << 20  # a 4096 x 4096 frame is 48 MiB
MAX_ANSWER = 1 << 20
MAX_SIDE = 4096
MAX_COUNT = 256  # crops per request, or boxes per frame


class Kind(IntEnum):
    CROPS = 1  # count crops of height x width, each classified
    FRAME = 2  # one frame and count boxes in it; no boxes: the whole frame is classified
    INFO = 3  # no pixels: the answer names the model only


class BadRequest(ValueError):
    """A request that breaks the spec; the message says how. ``fatal``: the stream cannot be
    trusted any more (bad length or magic), so the server closes it after answering."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True)
class Request:
    id: int
    kind: Kind
    pixels: np.ndarray  # CROPS: (N, H, W, 3); FRAME: (H, W, 3); INFO: empty; uint8 BGR
    boxes: np.ndarray  # FRAME: (B, 4) float32 x1 y1 x2 y2 in pixels; otherwise (0, 4)


def encode_request(req_id: int, kind: Kind, pixels: np.ndarray | None = None,
                   boxes: np.ndarray | None = None) -> bytes:
    """A whole request message, length prefix included."""
    b = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    if kind == Kind.INFO:
        body = HEADER.pack(MAGIC, VERSION, kind, 0, req_id, 0, 0, 0, 0)
    else:
        if pixels is None:
            raise ValueError("pixels are needed")
        p = np.ascontiguousarray(pixels, np.uint8)
        if kind == Kind.CROPS:
            count, (h, w) = len(p), p.shape[1:3]
        else:
            count, (h, w) = len(b), p.shape[:2]
        body = (HEADER.pack(MAGIC, VERSION, kind, 0, req_id, count, h, w, 3) + p.tobytes()
                + b"".join(BOX.pack(*map(float, box)) for box in b))
    return LENGTH.pack(len(body)) + body


def decode_request(body: bytes) -> Request:
    """A request from its body (the bytes after the length); ``BadRequest`` if malformed."""
    if len(body) < HEADER.size:
        raise BadRequest(f"request of {len(body)} bytes is shorter than the "
                         f"{HEADER.size}-byte header", fatal=True)
    magic, version, kind, flags, req_id, count, h, w, ch = HEADER.unpack_from(body)
    if magic != MAGIC:
        raise BadRequest(f"magic {magic!r} is not {MAGIC!r}", fatal=True)
    if version != VERSION:
        raise BadRequest(f"version {version} is not supported (this server speaks {VERSION})")
    if kind not in Kind.__members__.values():
        raise BadRequest(f"kind {kind} is not one of {[int(k) for k in Kind]}")
    if flags:
        raise BadRequest(f"flags {flags:#x} must be 0 in version 1")
    kind = Kind(kind)
    empty = np.zeros((0, 4), np.float32)
    if kind == Kind.INFO:
        return Request(req_id, kind, np.zeros((0,), np.uint8), empty)
    if ch != 3:
        raise BadRequest(f"channels {ch}: only 3 (BGR) is supported")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise BadRequest(f"image of {h} x {w} pixels: each side must be 1..{MAX_SIDE}")
    if count > MAX_COUNT or (kind == Kind.CROPS and count == 0):
        raise BadRequest(f"count {count} is outside {int(kind == Kind.CROPS)}..{MAX_COUNT}")
    images = count if kind == Kind.CROPS else 1
    n_px = images * h * w * 3
    n_boxes = count if kind == Kind.FRAME else 0
    want = HEADER.size + n_px + n_boxes * BOX.size
    if len(body) != want:
        raise BadRequest(f"request body has {len(body)} bytes; its header announces {want}")
    px = np.frombuffer(body, np.uint8, n_px, HEADER.size)
    pixels = px.reshape((count, h, w, 3) if kind == Kind.CROPS else (h, w, 3))
    boxes = np.frombuffer(body, ">f4", n_boxes * 4, HEADER.size + n_px).astype(np.float32)
    boxes = boxes.reshape(n_boxes, 4)
    if n_boxes and not (np.isfinite(boxes).all()
                        and (boxes[:, 2] > boxes[:, 0]).all()
                        and (boxes[:, 3] > boxes[:, 1]).all()):
        raise BadRequest("a box is not finite or has x2 <= x1 or y2 <= y1")
    return Request(req_id, kind, pixels, boxes)


def encode_answer(answer: dict[str, object]) -> bytes:
    body = json.dumps(answer, separators=(",", ":")).encode()
    return LENGTH.pack(len(body)) + body


def error_answer(req_id: int, code: str, message: str,
                 model: dict[str, object] | None) -> dict[str, object]:
    return {"v": VERSION, "id": req_id, "ok": False, "model": model,
            "error": {"code": code, "message": message}}
