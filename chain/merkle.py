"""The contribution Merkle root, exactly as SwarmLedger.vy computes it.

Each leaf is keccak256(sender 20 bytes ‖ samples 4 bytes big-endian ‖ payload hash 32 bytes),
in the commitment's order (senders ascending); each level hashes pairs as
keccak256(left ++ right); an odd last node moves up unchanged.
"""

from __future__ import annotations

from eth_hash.auto import keccak


def entry_leaf(sender: str, samples: int, payload_hash: bytes) -> bytes:
    return keccak(bytes.fromhex(sender[2:]) + samples.to_bytes(4, "big") + payload_hash)


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        raise ValueError("a Merkle root needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]
