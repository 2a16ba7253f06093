"""The contribution Merkle root, exactly as SwarmLedger.vy computes it.

Leaves are the contribution hashes in ascending order; each level hashes pairs as
keccak256(left ++ right); an odd last node moves up unchanged.
"""

from __future__ import annotations

from eth_hash.auto import keccak


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        raise ValueError("a Merkle root needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]
