"""A small, blocking Python client for the inference service (docs/spec/serve-v1.md).

    with ServeClient("/run/swarmdrive/serve.sock") as c:
        answer = c.frame(image, boxes)      # image: (H, W, 3) uint8 BGR; boxes: (B, 4)
        for obj in answer["objects"]:
            print(obj["class"], obj["score"], answer["model"]["hash"])

Standard library and numpy only. One request at a time per client; open one per thread.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np

from agent.serve.protocol import LENGTH, MAX_ANSWER, Kind, encode_request


class ServeError(Exception):
    """The service refused a request, or could not be reached; ``code`` is serve-v1's error
    code (``unreachable`` and ``protocol`` for what the client itself saw)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ServeClient:
    def __init__(self, path: str | Path, timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(str(path))
        except OSError as e:
            self.sock.close()
            raise ServeError("unreachable", f"{path}: {e.strerror or e}") from None
        self._next_id = 1

    def crops(self, crops: np.ndarray) -> dict[str, Any]:
        """Classify (N, H, W, 3) uint8 BGR crops (cut as ``models.preprocess.crop`` does)."""
        return self._ask(Kind.CROPS, crops, None)

    def frame(self, image: np.ndarray, boxes: np.ndarray | None = None) -> dict[str, Any]:
        """The objects in an (H, W, 3) uint8 BGR frame: a detector finds them (no boxes); a
        classifier names each box sent (no boxes: the whole frame as one object)."""
        return self._ask(Kind.FRAME, image, np.zeros((0, 4)) if boxes is None else boxes)

    def info(self) -> dict[str, Any]:
        """The served model: hash, version, task, classes, and its input size or frame size."""
        return self._ask(Kind.INFO, None, None)

    def _ask(self, kind: Kind, pixels: np.ndarray | None, boxes: np.ndarray | None
             ) -> dict[str, Any]:
        req_id, self._next_id = self._next_id, (self._next_id + 1) % (1 << 32)
        try:
            self.sock.sendall(encode_request(req_id, kind, pixels, boxes))
            (n,) = LENGTH.unpack(self._exactly(LENGTH.size))
            if n > MAX_ANSWER:
                raise ServeError("protocol", f"answer of {n} bytes is over {MAX_ANSWER}")
            answer: dict[str, Any] = json.loads(self._exactly(n))
        except OSError as e:
            raise ServeError("unreachable", str(e)) from None
        if answer.get("id") != req_id:
            raise ServeError("protocol", f"answer for request {answer.get('id')}, not {req_id}")
        if not answer.get("ok"):
            err = answer.get("error") or {}
            raise ServeError(str(err.get("code", "unknown")), str(err.get("message", "")))
        return answer

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ServeError("unreachable", "the service closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
