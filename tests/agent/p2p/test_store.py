"""The content store keeps what it can serve, within its byte budget."""

from __future__ import annotations

import hashlib

from agent.p2p.store import ContentStore, Kind


def test_put_keys_by_sha256_and_get_returns_the_bytes():
    s = ContentStore()
    key = s.put(Kind.DELTA, b"payload")
    assert key == hashlib.sha256(b"payload").digest()
    assert s.get(Kind.DELTA, key) == b"payload" and s.get(Kind.MODEL, key) is None


def test_oldest_unpinned_entries_go_first_when_full():
    s = ContentStore(max_bytes=25)
    model = s.put(Kind.MODEL, b"m" * 10, pin=True)
    a = s.put(Kind.DELTA, b"a" * 10)
    b = s.put(Kind.DELTA, b"b" * 10)  # 30 bytes: over budget, the oldest delta goes
    assert s.has(Kind.MODEL, model) and not s.has(Kind.DELTA, a) and s.has(Kind.DELTA, b)
    assert s.bytes == 20
    s.unpin(Kind.MODEL, model)
    s.put(Kind.DELTA, b"c" * 10)
    assert not s.has(Kind.MODEL, model)
