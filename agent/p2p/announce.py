"""Signed round announcements: what a vehicle gossips after training (wire format SDA1, v1).

An announcement says "for round r, from base B, I hold a delta of this sha256, this size, trained
on this many samples". It is small (182 bytes, fixed) and signed with the vehicle's key, so it
proves its author whoever relays it. It binds the fleet (chain ID and contract), so an
announcement cannot be replayed into another fleet. Spec: docs/spec/announce-v1.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from eth_utils import keccak

from agent.p2p.identity import Identity
from chain import signing
from chain.signing import SignatureError, recover

MAGIC = b"SDA1"
VERSION = 1
BODY = struct.Struct("<4sBQ20sQ32s32sIIf")
SIGNATURE_SIZE = 65
SIZE = BODY.size + SIGNATURE_SIZE
DOMAIN = b"swarmdrive announcement v1\x00"


class AnnounceError(ValueError):
    """An announcement that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Fleet:
    """What an announcement binds to: one contract on one chain."""
    chain_id: int
    contract: bytes  # 20-byte address


@dataclass(frozen=True)
class Announcement:
    fleet: Fleet
    round: int
    base_hash: bytes
    payload_hash: bytes
    size: int
    samples: int
    loss: float
    sender: str  # checksummed address recovered from the signature
    raw: bytes  # the signed wire bytes, served as-is to peers that missed the gossip


def _body(fleet: Fleet, round_: int, base_hash: bytes, payload_hash: bytes, size: int,
          samples: int, loss: float) -> bytes:
    return BODY.pack(MAGIC, VERSION, fleet.chain_id, fleet.contract, round_, base_hash,
                     payload_hash, size, samples, loss)


def sign(identity: Identity, fleet: Fleet, round_: int, base_hash: bytes, payload_hash: bytes,
         size: int, samples: int, loss: float) -> Announcement:
    body = _body(fleet, round_, base_hash, payload_hash, size, samples, loss)
    sig = signing.sign(bytes(identity.account.key), keccak(DOMAIN + body))
    return Announcement(fleet, round_, base_hash, payload_hash, size, samples, loss,
                        identity.address, body + sig)


def parse(data: bytes) -> Announcement:
    """Decode and verify an announcement; raises ``AnnounceError`` saying what is wrong."""
    if len(data) != SIZE:
        raise AnnounceError(f"announcement is {len(data)} bytes, not {SIZE}")
    body, sig = data[:BODY.size], data[BODY.size:]
    magic, version, chain_id, contract, round_, base, payload, size, samples, loss = \
        BODY.unpack(body)
    if magic != MAGIC:
        raise AnnounceError(f"bad magic {magic!r}")
    if version != VERSION:
        raise AnnounceError(f"unsupported announcement version {version}")
    if loss != loss:  # NaN: never from an honest trainer, and it breaks equality checks
        raise AnnounceError("loss is NaN")
    try:
        sender = recover(keccak(DOMAIN + body), sig)
    except SignatureError as e:
        raise AnnounceError(str(e)) from None
    return Announcement(Fleet(chain_id, contract), round_, base, payload, size, samples, loss,
                        sender, bytes(data))
