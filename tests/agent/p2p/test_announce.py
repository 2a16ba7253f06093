"""Announcements: signed, fixed-size, and anything else is an AnnounceError."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.p2p import announce
from agent.p2p.announce import AnnounceError, Fleet, parse, sign
from agent.p2p.identity import Identity

FLEET = Fleet(1, b"\x11" * 20)
ME = Identity.from_secret(hashlib.sha256(b"me").digest())


def good() -> announce.Announcement:
    return sign(ME, FLEET, 7, b"\xaa" * 32, b"\xbb" * 32, 4096, 120, 0.25)


def test_round_trip_recovers_the_sender_and_every_field():
    a = good()
    assert len(a.raw) == announce.SIZE < 64 << 10
    b = parse(a.raw)
    assert b == a and b.sender == ME.address


def test_a_changed_byte_changes_the_signer():
    raw = bytearray(good().raw)
    raw[40] ^= 1  # inside the round number
    assert parse(bytes(raw)).sender != ME.address  # so it is an unregistered sender


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[:-1], "bytes, not"),
    (lambda r: r + b"\x00", "bytes, not"),
    (lambda r: b"XXXX" + r[4:], "bad magic"),
    (lambda r: r[:4] + b"\x09" + r[5:], "version 9"),
])
def test_malformed_announcements_are_named(mutate, message):
    with pytest.raises(AnnounceError, match=message):
        parse(mutate(good().raw))


def test_nan_loss_is_refused():
    bad = sign(ME, FLEET, 1, b"\x00" * 32, b"\x00" * 32, 1, 1, math.nan)
    with pytest.raises(AnnounceError, match="NaN"):
        parse(bad.raw)


def parse_or_error(data: bytes) -> str:
    try:
        a = parse(data)
    except AnnounceError:
        return "error"
    assert a.raw == data and a.sender.startswith("0x")
    return "parsed"


@given(st.binary(min_size=0, max_size=400))
def test_arbitrary_bytes_give_an_announcement_or_an_announce_error(data):
    # Anything but the exact size is refused; no other exception type ever escapes.
    assert parse_or_error(data) == ("error" if len(data) != announce.SIZE else parse_or_error(
        data))


@given(st.binary(min_size=announce.SIZE, max_size=announce.SIZE))
def test_arbitrary_fixed_size_bytes_never_escape_as_another_error(data):
    data = announce.MAGIC + bytes([announce.VERSION]) + data[5:]
    assert parse_or_error(data) in ("parsed", "error")
