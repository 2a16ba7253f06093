"""The content store: payloads a vehicle can serve, keyed by kind and sha256.

Anything fetched or produced here (deltas, merged models, the announcements that describe
deltas) is kept so that any vehicle holding a payload can serve it, not just its author. The
store is bounded: the oldest entries go first once ``max_bytes`` is reached, except pinned ones
(the current model), which a joining vehicle must always be able to fetch.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from enum import IntEnum


class Kind(IntEnum):
    DELTA = 0
    MODEL = 1
    ANNOUNCEMENT = 2  # keyed by the payload hash it announces, not by its own hash
    RELEASE = 3  # an OTA release's ONNX file (docs/spec/ota-v1.md)


class ContentStore:
    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Kind, bytes], bytes] = OrderedDict()
        self._pinned: set[tuple[Kind, bytes]] = set()
        self.bytes = 0

    def put(self, kind: Kind, data: bytes, key: bytes | None = None, pin: bool = False) -> bytes:
        """Store ``data`` under ``key`` (default: its sha256) and return the key."""
        key = hashlib.sha256(data).digest() if key is None else key
        k = (kind, key)
        if k not in self._items:
            self._items[k] = data
            self.bytes += len(data)
        if pin:
            self._pinned.add(k)
        self._evict()
        return key

    def get(self, kind: Kind, key: bytes) -> bytes | None:
        return self._items.get((kind, key))

    def has(self, kind: Kind, key: bytes) -> bool:
        return (kind, key) in self._items

    def unpin(self, kind: Kind, key: bytes) -> None:
        self._pinned.discard((kind, key))

    def _evict(self) -> None:
        for k in list(self._items):
            if self.bytes <= self.max_bytes:
                return
            if k not in self._pinned:
                self.bytes -= len(self._items.pop(k))
