"""The fetch protocol: ask a peer for one payload by kind and sha256 (``/swarmdrive/fetch/1.0.0``).

Request, 38 bytes: magic ``SDF1``, version, kind, 32-byte key. Response: status byte and a u32
body length, then the body. Both sides are bounded: the server answers one request per stream
and only to admitted peers, serves at most ``max_concurrent`` streams at once and
``max_per_peer`` per peer (BUSY beyond, before it reads the request) and gives up on a slow
client;
the client refuses a body longer than it expects and checks its hash before anyone decodes it.
Spec: docs/spec/fetch-v1.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
from collections import Counter
from collections.abc import Callable
from enum import IntEnum

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from agent.p2p import announce
from agent.p2p.store import ContentStore, Kind
from models.codec import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/swarmdrive/fetch/1.0.0")
MAGIC = b"SDF1"
VERSION = 1
REQUEST = struct.Struct("<4sBB32s")
RESPONSE = struct.Struct("<BI")
CHUNK = 64 << 10
# The largest body each kind may have; a fetch also passes its own, tighter, expectation.
MAX_BODY = {Kind.DELTA: MAX_PAYLOAD_BYTES, Kind.MODEL: 64 << 20,
            Kind.ANNOUNCEMENT: announce.SIZE, Kind.RELEASE: 64 << 20}


class Status(IntEnum):
    OK = 0
    NOT_FOUND = 1
    BUSY = 2
    BAD_REQUEST = 3


class FetchError(Exception):
    """A fetch that failed: the peer lacks it, is busy, broke the protocol or sent bad bytes."""


class BusyError(FetchError):
    """The peer holds its serving slots for others: ask it again later."""


class BadPayloadError(FetchError):
    """The peer served (or offered) bytes that are not what the key names."""


async def read_exactly(stream: INetStream, n: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(min(CHUNK, n - len(buf)))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise FetchError(f"{what}: stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def parse_request(data: bytes) -> tuple[Kind, bytes]:
    magic, version, kind, key = REQUEST.unpack(data)
    if magic != MAGIC or version != VERSION:
        raise FetchError(f"bad request header {magic!r} v{version}")
    try:
        return Kind(kind), key
    except ValueError:
        raise FetchError(f"unknown kind {kind}") from None


class FetchServer:
    """Serves the content store to peers, one request per stream.

    Fair by construction: a stream takes a serving slot (``max_concurrent`` in all, at most
    ``max_per_peer`` per peer) *before* its request is read, so idle or slow streams cannot
    queue up unbounded, and one peer can never hold every slot. A peer the gate refuses gets
    nothing at all.
    """

    def __init__(self, store: ContentStore, stats: Counter[str], max_concurrent: int = 8,
                 timeout: float = 30.0, max_per_peer: int = 2,
                 admits: Callable[[ID], str | None] = lambda peer: None,
                 request_timeout: float = 5.0) -> None:
        self.store, self.stats, self.timeout = store, stats, timeout
        self.max_concurrent, self.max_per_peer = max_concurrent, max_per_peer
        self.request_timeout = request_timeout
        self.admits = admits
        self._serving: Counter[ID] = Counter()

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            reason = self.admits(peer)
            if reason is not None:
                self.stats[f"fetch_refused_{reason}"] += 1
                return
            if sum(self._serving.values()) >= self.max_concurrent \
                    or self._serving[peer] >= self.max_per_peer:
                self.stats["fetch_busy"] += 1
                await stream.write(RESPONSE.pack(Status.BUSY, 0))
                return
            self._serving[peer] += 1
            try:
                with trio.move_on_after(self.timeout) as scope:
                    await self._serve(stream)
            finally:
                self._serving[peer] -= 1
                if not self._serving[peer]:
                    del self._serving[peer]
            if scope.cancelled_caught:
                self.stats["fetch_serve_timeout"] += 1
                log.info("fetch_serve_timeout peer=%s", peer)
        except Exception as e:  # a remote peer's stream must never take the vehicle down
            self.stats["fetch_serve_error"] += 1
            log.info("fetch_serve_error peer=%s error=%s", peer, e)
        finally:
            await _close(stream)

    async def _serve(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(self.request_timeout):
                request = await read_exactly(stream, REQUEST.size, "fetch request")
            kind, key = parse_request(request)
        except (FetchError, trio.TooSlowError):
            self.stats["fetch_bad_request"] += 1
            await stream.write(RESPONSE.pack(Status.BAD_REQUEST, 0))
            raise
        data = self.store.get(kind, key)
        if data is None:
            await stream.write(RESPONSE.pack(Status.NOT_FOUND, 0))
            return
        await stream.write(RESPONSE.pack(Status.OK, len(data)))
        for i in range(0, len(data), CHUNK):
            await stream.write(data[i:i + CHUNK])
        self.stats["bytes_sent"] += len(data)
        self.stats["fetch_served"] += 1


async def fetch_from(stream: INetStream, kind: Kind, key: bytes, max_size: int) -> bytes:
    """Run one fetch on an open stream; the body is returned only if its hash checks out."""
    try:
        await stream.write(REQUEST.pack(MAGIC, VERSION, kind, key))
        status, length = RESPONSE.unpack(await read_exactly(stream, RESPONSE.size,
                                                            "fetch response"))
        if status == Status.BUSY:
            raise BusyError("peer answered BUSY")
        if status != Status.OK:
            name = Status(status).name if status in Status._value2member_map_ else status
            raise FetchError(f"peer answered {name}")
        limit = min(max_size, MAX_BODY[kind])
        if length > limit:
            # Keys name content of a known size: a bigger offer is never what the key names.
            raise BadPayloadError(f"peer offers {length} bytes, over the {limit}-byte limit")
        body = await read_exactly(stream, length, "fetch body")
    finally:
        await _close(stream)
    check_body(kind, key, body)
    return body


def check_body(kind: Kind, key: bytes, body: bytes) -> None:
    """A body must be what its key names: its sha256, or for an announcement the payload it
    announces (with a valid signature)."""
    if kind == Kind.ANNOUNCEMENT:
        try:
            ann = announce.parse(body)
        except announce.AnnounceError as e:
            raise BadPayloadError(f"served announcement is invalid: {e}") from None
        if ann.payload_hash != key:
            raise BadPayloadError("served announcement is for another payload")
    elif hashlib.sha256(body).digest() != key:
        raise BadPayloadError("payload hash does not match")


async def _close(stream: INetStream) -> None:
    with contextlib.suppress(Exception):  # already reset or closed by the peer
        await stream.close()
