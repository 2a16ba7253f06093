"""Where a release's bytes come from: the fleet's peers (fetch-v1, kind 3) and the release's
HTTP(S) mirror. Every source is cut off at the release's size and trusted by hash only."""

from __future__ import annotations

import hashlib
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import trio

from agent.ota.checks import ReleaseRejected, check_bytes
from agent.p2p.fetch import FetchError
from agent.p2p.node import Node
from agent.p2p.store import Kind
from chain.ledger import Release

log = logging.getLogger(__name__)

CHUNK = 1 << 16
SOCKET_TIMEOUT_S = 15.0


class SourceError(Exception):
    """No good bytes from one source; the message says which and why."""


async def from_peers(node: Node, release: Release, timeout_s: float) -> bytes:
    """The release from admitted fleet peers, hash-checked by the fetch itself."""
    try:
        data = await node.fetch(Kind.RELEASE, release.onnx_sha256, release.size,
                                timeout_s=timeout_s)
    except FetchError as e:
        raise SourceError(f"peers: {e}") from None
    _check(release, data, "peers")
    return data


async def from_mirror(release: Release, partial_dir: Path, timeout_s: float) -> bytes:
    """The release from its mirror, resuming a partial download; at most ``size`` bytes."""
    parts = urlsplit(release.uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"mirror {release.uri!r}: not an http(s) URL")
    stop = threading.Event()
    partial = partial_dir / f"{release.onnx_sha256.hex()}.part"
    try:
        with trio.fail_after(timeout_s):
            data = await trio.to_thread.run_sync(  # type: ignore[call-arg]
                download, release.uri, partial, release.size, stop.is_set,
                abandon_on_cancel=True)
    except trio.TooSlowError:
        raise SourceError(f"mirror {release.uri}: no whole file within {timeout_s:g} s "
                          "(the part so far is kept)") from None
    finally:
        stop.set()  # an abandoned download thread stops at its next chunk
    try:
        _check(release, data, "mirror")
    finally:
        partial.unlink(missing_ok=True)  # the bytes are wrong, or they are home
    return data


def download(url: str, partial: Path, size: int, stopped: Callable[[], bool]) -> bytes:
    """GET ``url`` into ``partial`` (resuming what is there with a Range request) and return
    the whole body; ``SourceError`` beyond ``size`` bytes (endless data) or on any failure."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=SOCKET_TIMEOUT_S) as resp:
            if have and resp.status != 206:  # the server ignored the range: start again
                have = 0
            with partial.open("r+b" if have else "wb") as f:
                f.seek(have)
                f.truncate()
                got = have
                while chunk := resp.read(min(CHUNK, size + 1 - got)):
                    if stopped():
                        raise SourceError(f"mirror {url}: stopped")
                    got += len(chunk)
                    if got > size:
                        raise SourceError(f"mirror {url}: sends more than the release's "
                                          f"{size} bytes (endless data)")
                    f.write(chunk)
    except urllib.error.HTTPError as e:
        raise SourceError(f"mirror {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(f"mirror {url}: {reason}") from None
    except SourceError:
        if got > size:
            partial.unlink(missing_ok=True)
        raise
    if got < size:
        raise SourceError(f"mirror {url}: the connection ended after {got} of {size} bytes "
                          "(the part is kept; the next try resumes)")
    return partial.read_bytes()


def _check(release: Release, data: bytes, source: str) -> None:
    try:
        check_bytes(release, data)
    except ReleaseRejected as e:
        raise SourceError(f"{source}: {e}") from None
    log.debug("source_ok source=%s sha256=%s", source, hashlib.sha256(data).hexdigest()[:12])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A mirror names the file itself; a redirect is refused rather than followed."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
