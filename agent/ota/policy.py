"""Which release a vehicle should serve, from what the chain says and what failed here.

Pure: no I/O, so every rule of docs/spec/ota-v1.md (target, revocation, rollback protection) is
tested without a chain or a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from chain.ledger import Release


@dataclass(frozen=True)
class Serving:
    """The release the inference service runs now (None: a model from before any release)."""
    version: int
    sha256: str  # hex, of the file installed


@dataclass(frozen=True)
class Plan:
    action: Literal["keep", "install", "fallback", "refuse"]
    release: Release | None = None  # for "install"
    reason: str = ""


def target(releases: Sequence[Release], failed: Mapping[int, str]) -> Release | None:
    """The newest release that is neither revoked nor failed on this vehicle."""
    for r in reversed(releases):
        if not r.revoked and r.version not in failed:
            return r
    return None


def plan(releases: Sequence[Release], serving: Serving | None,
         failed: Mapping[int, str]) -> Plan:
    """What to do next. ``releases`` is every release on chain, version 1 first."""
    if serving is not None:
        if serving.version > len(releases):
            return Plan("refuse", reason=f"the chain names {len(releases)} releases, but this "
                        f"vehicle serves release {serving.version}: a stale or forged view")
        on_chain = releases[serving.version - 1]
        if on_chain.onnx_sha256.hex() != serving.sha256:
            return Plan("refuse", reason=f"the chain's hash for release {serving.version} is "
                        "not the one this vehicle installed")
    best = target(releases, failed)
    if best is None:
        if serving is not None:
            return Plan("fallback", reason=f"release {serving.version} is "
                        f"{_why_not(releases[serving.version - 1], failed)} and no good "
                        "release is left")
        return Plan("keep")
    if serving is not None and best.version == serving.version:
        return Plan("keep")
    # best < serving only when serving is revoked or failed: target() would pick it otherwise.
    reason = (f"release {best.version} is the newest good one" if serving is None
              or best.version > serving.version else
              f"release {serving.version} is {_why_not(releases[serving.version - 1], failed)}")
    return Plan("install", best, reason)


def _why_not(r: Release, failed: Mapping[int, str]) -> str:
    return "revoked" if r.revoked else f"failed here ({failed.get(r.version, '')})"
