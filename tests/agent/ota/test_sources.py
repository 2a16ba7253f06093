"""The release mirror over real HTTP on 127.0.0.1: resumed downloads, the size cut-off (endless
data), wrong bytes and redirects."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trio

from agent.ota.sources import SourceError, download, from_mirror
from chain.ledger import Release

BODY = os.urandom(300_000)


class Mirror:
    """A file server whose answers a test sets: ``body`` per path, ``extra`` bytes streamed
    past it, ``cut`` to drop the connection after that many bytes, ``redirect``."""

    def __init__(self) -> None:
        self.body: dict[str, bytes] = {}
        self.extra = 0
        self.cut: int | None = None
        self.ranges: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # http.server's name
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/v1.onnx")
                    self.end_headers()
                    return
                data = mirror.body.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                mirror.ranges.append(rng or "")
                if rng:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                else:
                    self.send_response(200)
                self.end_headers()  # no Content-Length: the client must bound what it reads
                out = data[start:] + b"\0" * mirror.extra
                if mirror.cut is not None:
                    out = out[:mirror.cut]
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    m.body["/v1.onnx"] = BODY
    yield m
    m.server.shutdown()


def release(url: str, body: bytes = BODY) -> Release:
    return Release(1, hashlib.sha256(body).digest(), len(body), 0, url, False)


def test_a_broken_download_resumes_where_it_stopped(mirror, tmp_path):
    part = tmp_path / "x.part"
    mirror.cut = 100_000
    with pytest.raises(SourceError):  # the connection ends early: what came is kept
        download(f"{mirror.url}/v1.onnx", part, len(BODY), lambda: False)
    assert part.stat().st_size == 100_000
    mirror.cut = None
    assert download(f"{mirror.url}/v1.onnx", part, len(BODY), lambda: False) == BODY
    assert mirror.ranges[-1] == "bytes=100000-"


def test_a_mirror_that_sends_more_than_the_release_size_is_cut_off(mirror, tmp_path):
    mirror.extra = 1 << 20
    with pytest.raises(SourceError, match="endless data"):
        trio.run(from_mirror, release(f"{mirror.url}/v1.onnx"), tmp_path, 30.0)
    assert not list(tmp_path.glob("*.part"))  # nothing of it kept


def test_wrong_bytes_and_redirects_are_refused(mirror, tmp_path):
    mirror.body["/other.onnx"] = os.urandom(len(BODY))
    with pytest.raises(SourceError, match="do not match the chain's sha256"):
        trio.run(from_mirror, release(f"{mirror.url}/other.onnx"), tmp_path, 30.0)
    with pytest.raises(SourceError, match="HTTP 302"):
        trio.run(from_mirror, release(f"{mirror.url}/redirect"), tmp_path, 30.0)
    assert trio.run(from_mirror, release(f"{mirror.url}/v1.onnx"), tmp_path, 30.0) == BODY


def test_only_http_mirrors_are_asked(tmp_path: Path):
    with pytest.raises(SourceError, match="not an http"):
        trio.run(from_mirror, release("file:///etc/passwd"), tmp_path, 30.0)
