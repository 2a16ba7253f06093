"""Signed attestations: what a vehicle gossips after it recomputed a commit bit for bit
(wire format SDT1, v1; docs/spec/round-v2.md, "Attestation").

The signature is over the contract's attestation digest (``chain.signing``), so the same 65
bytes that travel in gossip go into ``finalize_round`` unchanged, except v (0/1 here, 27/28 for
ecrecover). 138 bytes, fixed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.p2p.announce import Fleet
from agent.p2p.identity import Identity
from chain import signing
from chain.signing import SignatureError

MAGIC = b"SDT1"
VERSION = 1
BODY = struct.Struct("<4sBQ20sQ32s")
SIZE = BODY.size + signing.SIGNATURE_SIZE


class AttestError(ValueError):
    """An attestation that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Attestation:
    fleet: Fleet
    round: int
    model_hash: bytes
    signer: str  # checksummed address recovered from the signature
    signature: bytes  # 65 bytes, v 0/1
    raw: bytes


def digest(fleet: Fleet, round_: int, model_hash: bytes) -> bytes:
    return signing.attestation_digest(fleet.chain_id, fleet.contract, round_, model_hash)


def sign(identity: Identity, fleet: Fleet, round_: int, model_hash: bytes) -> Attestation:
    sig = signing.sign(bytes(identity.account.key), digest(fleet, round_, model_hash))
    raw = BODY.pack(MAGIC, VERSION, fleet.chain_id, fleet.contract, round_, model_hash) + sig
    return Attestation(fleet, round_, model_hash, identity.address, sig, raw)


def parse(data: bytes) -> Attestation:
    """Decode and verify an attestation; raises ``AttestError`` saying what is wrong."""
    if len(data) != SIZE:
        raise AttestError(f"attestation is {len(data)} bytes, not {SIZE}")
    magic, version, chain_id, contract, round_, model_hash = BODY.unpack(data[:BODY.size])
    if magic != MAGIC:
        raise AttestError(f"bad magic {magic!r}")
    if version != VERSION:
        raise AttestError(f"unsupported attestation version {version}")
    fleet = Fleet(chain_id, contract)
    sig = data[BODY.size:]
    try:
        signer = signing.recover(digest(fleet, round_, model_hash), sig)
    except SignatureError as e:
        raise AttestError(str(e)) from None
    return Attestation(fleet, round_, model_hash, signer, sig, bytes(data))
