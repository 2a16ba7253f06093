"""serve-v1 framing, without sockets: what a client sends is what the server reads, and every
malformed request is refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from agent.serve.protocol import (
    HEADER,
    LENGTH,
    MAX_COUNT,
    BadRequest,
    Kind,
    decode_request,
    encode_request,
)


def body(msg: bytes) -> bytes:
    (n,) = LENGTH.unpack_from(msg)
    assert n == len(msg) - LENGTH.size
    return msg[LENGTH.size:]


def test_crops_frames_and_info_round_trip():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 32, 24, 3), np.uint8)
    req = decode_request(body(encode_request(7, Kind.CROPS, crops)))
    assert (req.id, req.kind) == (7, Kind.CROPS) and np.array_equal(req.pixels, crops)

    image = rng.integers(0, 256, (48, 64, 3), np.uint8)
    boxes = np.array([[1, 2, 30.5, 40], [0, 0, 64, 48]], np.float32)
    req = decode_request(body(encode_request(2**32 - 1, Kind.FRAME, image, boxes)))
    assert req.id == 2**32 - 1 and np.array_equal(req.pixels, image)
    assert np.array_equal(req.boxes, boxes)

    req = decode_request(body(encode_request(1, Kind.INFO)))
    assert req.kind == Kind.INFO and req.pixels.size == 0


def test_the_spec_example_bytes_decode():  # docs/spec/serve-v1.md, "Example exchange"
    msg = bytes.fromhex("00000020 53445356 01010000 00000002 0001 0002 0002 0300"
                        "000102030405060708090a0b")
    req = decode_request(body(msg))
    assert req.kind == Kind.CROPS and req.pixels.shape == (1, 2, 2, 3)
    assert req.pixels.ravel().tolist() == list(range(12))


def _header(**fields: int) -> bytes:
    f = {"kind": 1, "version": 1, "flags": 0, "count": 1, "h": 2, "w": 2, "ch": 3} | fields
    return HEADER.pack(b"SDSV", f["version"], f["kind"], f["flags"], 5, f["count"], f["h"],
                       f["w"], f["ch"])


@pytest.mark.parametrize(("raw", "words", "fatal"), [
    (b"SDSV", "shorter than the 20-byte header", True),
    (b"XXXX" + _header()[4:] + bytes(12), "magic", True),
    (_header(version=2) + bytes(12), "version 2", False),
    (_header(kind=9), "kind 9", False),
    (_header(flags=1) + bytes(12), "flags", False),
    (_header(ch=1) + bytes(4), "channels 1", False),
    (_header(h=0), "each side must be 1..4096", False),
    (_header(w=5000), "each side must be 1..4096", False),
    (_header(count=0), "count 0", False),
    (_header(count=MAX_COUNT + 1), f"count {MAX_COUNT + 1}", False),
    (_header() + bytes(11), "announces 32", False),
    (_header(kind=2, count=1) + bytes(12) + bytes(16), "x2 <= x1", False),
])
def test_malformed_requests_are_refused_with_the_reason(raw, words, fatal):
    with pytest.raises(BadRequest, match=words) as e:
        decode_request(raw)
    assert e.value.fatal == fatal


def test_non_finite_boxes_are_refused():
    image = np.zeros((4, 4, 3), np.uint8)
    msg = encode_request(1, Kind.FRAME, image, np.array([[0, 0, np.nan, 2]]))
    with pytest.raises(BadRequest, match="not finite"):
        decode_request(body(msg))
