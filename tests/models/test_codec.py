"""The delta codec: round trips, error feedback, and the decoder's contract on hostile bytes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.codec import (
    DENSE,
    HEADER,
    MAX_ABS_VALUE,
    MAX_PAYLOAD_BYTES,
    CodecConfig,
    CodecError,
    decode,
    encode,
    peek_header,
)
from models.layout import ModelLayout
from models.net import CropNet, NetConfig

LAYOUT = ModelLayout.of(CropNet(NetConfig()).state_dict())
BASE = bytes(range(32))
CONFIGS = [DENSE, CodecConfig(0.01, 8), CodecConfig(0.05, 4), CodecConfig(0.3, 32),
           CodecConfig(1.0, 8)]


def _delta(seed: int, scale: float = 1e-2) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(LAYOUT.size) * scale).astype(np.float32)


def _reseal(buf: bytearray) -> bytes:
    """Recompute the checksum so that a mutation reaches the checks behind it."""
    body = bytes(buf[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_round_trip_and_error_feedback(cfg):
    d = _delta(1)
    payload, residual = encode(d, LAYOUT, BASE, 7, cfg)
    out = decode(payload, LAYOUT)
    assert out.round == 7 and out.base_hash == BASE
    # Error feedback is exact: what was sent plus what was kept is what was meant.
    assert np.array_equal(out.values + residual, d)
    sent = np.count_nonzero(out.values)
    assert sent <= max(1, round(cfg.density * LAYOUT.size))
    if cfg.bits == 32:
        nz = out.values != 0
        assert np.array_equal(out.values[nz], d[nz])


def test_top_k_keeps_the_largest():
    d = _delta(2)
    out = decode(encode(d, LAYOUT, BASE, 0, CodecConfig(0.01, 32))[0], LAYOUT).values
    kept = np.abs(d[out != 0])
    dropped = np.abs(d[out == 0])
    assert kept.min() >= dropped.max()


def test_residual_is_sent_later():
    """A coordinate too small to send now accumulates in the residual until it is sent."""
    d = np.zeros(LAYOUT.size, np.float32)
    d[:200] = 1.0
    d[500] = 0.4
    cfg = CodecConfig(200 / LAYOUT.size, 32)
    p, res = encode(d, LAYOUT, BASE, 0, cfg)
    assert decode(p, LAYOUT).values[500] == 0 and res[500] == np.float32(0.4)
    p, res = encode(np.zeros_like(d), LAYOUT, BASE, 1, cfg, res)
    assert decode(p, LAYOUT).values[500] == np.float32(0.4)


def test_compression_ratio_of_one_percent_is_over_100():
    payload, _ = encode(_delta(3), LAYOUT, BASE, 0, CodecConfig(0.01, 8))
    assert LAYOUT.size * 4 / len(payload) >= 100


def test_encoder_refuses_non_finite():
    d = _delta(4)
    d[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode(d, LAYOUT, BASE, 0, CodecConfig())


def test_wrong_architecture_is_rejected():
    other = ModelLayout.of(CropNet(NetConfig(width=8)).state_dict())
    payload, _ = encode(np.zeros(other.size, np.float32), other, BASE, 0, CodecConfig())
    with pytest.raises(CodecError, match="architecture id"):
        decode(payload, LAYOUT)


def test_a_payload_names_its_author():
    me = bytes(range(20))
    payload, _ = encode(_delta(4), LAYOUT, BASE, 2, CodecConfig(), author=me)
    assert decode(payload, LAYOUT).author == me
    other, _ = encode(_delta(4), LAYOUT, BASE, 2, CodecConfig(), author=bytes(20))
    assert decode(other, LAYOUT).author != me and other != payload


def test_limits_and_header_checks():
    with pytest.raises(CodecError, match="over the"):
        decode(b"\0" * (MAX_PAYLOAD_BYTES + 1), LAYOUT)
    with pytest.raises(CodecError, match="shorter than a header"):
        decode(b"SDLT", LAYOUT)
    good, _ = encode(_delta(5), LAYOUT, BASE, 3, CodecConfig())
    assert peek_header(good)[:2] == (3, BASE)
    bad = bytearray(good)
    bad[:4] = b"XXXX"
    with pytest.raises(CodecError, match="bad magic"):
        decode(bytes(bad), LAYOUT)
    bad = bytearray(good)
    bad[4] = 9
    with pytest.raises(CodecError, match="unsupported delta version 9"):
        decode(bytes(bad), LAYOUT)
    bad = bytearray(good)
    bad[-10] ^= 0xFF
    with pytest.raises(CodecError, match="checksum"):
        decode(bytes(bad), LAYOUT)


def test_decompression_bomb_is_refused():
    """A body that claims more than the values can need never gets decompressed."""
    good, _ = encode(_delta(6), LAYOUT, BASE, 0, CodecConfig(0.01, 8))
    fields = list(HEADER.unpack_from(good))
    table_end = HEADER.size + fields[9] * 8
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    fields[10], fields[11] = len(bomb), 64 << 20
    forged = HEADER.pack(*fields) + good[HEADER.size : table_end] + bomb + b"\0\0\0\0"
    with pytest.raises(CodecError, match="impossible"):
        decode(_reseal(bytearray(forged)), LAYOUT)


def test_out_of_range_values_are_refused():
    d = np.zeros(LAYOUT.size, np.float32)
    d[3] = 1.0
    payload, _ = encode(d, LAYOUT, BASE, 0, CodecConfig(0.001, 8))
    buf = bytearray(payload)
    # Scale of the first tensor: make 127 * scale exceed MAX_ABS_VALUE.
    struct.pack_into("<f", buf, HEADER.size + 4, MAX_ABS_VALUE)
    with pytest.raises(CodecError, match="larger than"):
        decode(_reseal(buf), LAYOUT)
    struct.pack_into("<f", buf, HEADER.size + 4, float("nan"))
    with pytest.raises(CodecError, match="scale"):
        decode(_reseal(buf), LAYOUT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_raise_codec_error(data):
    try:
        out = decode(data, LAYOUT)
    except CodecError:
        return
    assert out.values.shape == (LAYOUT.size,) and np.all(np.isfinite(out.values))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=st.sampled_from(CONFIGS[1:3]), seed=st.integers(0, 3),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=8),
       cut=st.integers(0, 10**6), reseal=st.booleans())
def test_mutated_payloads_decode_or_raise_codec_error(cfg, seed, edits, cut, reseal):
    payload, _ = encode(_delta(seed), LAYOUT, BASE, 1, cfg)
    buf = bytearray(payload)
    for pos, val in edits:
        buf[pos % len(buf)] = val
    if cut % 3 == 0:
        buf = buf[: cut % len(buf)]
    data = _reseal(buf) if reseal and len(buf) > 4 else bytes(buf)
    try:
        out = decode(data, LAYOUT)
    except CodecError:
        return
    assert np.all(np.isfinite(out.values))
    assert float(np.abs(out.values).max()) <= MAX_ABS_VALUE


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-30, 30, width=32), min_size=1, max_size=64),
       bits=st.sampled_from([4, 8, 32]))
def test_round_trip_property(values, bits):
    d = np.zeros(LAYOUT.size, np.float32)
    d[: len(values)] = values
    p, res = encode(d, LAYOUT, BASE, 0, CodecConfig(64 / LAYOUT.size, bits))
    out = decode(p, LAYOUT).values
    assert np.allclose(out + res, d, atol=1e-6)
