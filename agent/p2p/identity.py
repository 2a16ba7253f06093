"""One secp256k1 key per vehicle: its libp2p peer ID and its Ethereum account at once.

The chain's registry lists addresses; gossip and fetch see peer IDs. Both derive from the same
public key, so a registered address names exactly one peer and no extra binding is needed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import coincurve
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import Secp256k1PublicKey, create_new_key_pair
from libp2p.peer.id import ID

from chain.keys import load_key


@dataclass(frozen=True)
class Identity:
    account: LocalAccount
    key_pair: KeyPair
    peer_id: ID

    @property
    def address(self) -> str:
        return str(self.account.address)

    @classmethod
    def from_secret(cls, secret: bytes) -> Identity:
        key_pair = create_new_key_pair(secret)
        return cls(Account.from_key(secret), key_pair, ID.from_pubkey(key_pair.public_key))

    @classmethod
    def from_key_file(cls, path: Path, password: str | None = None) -> Identity:
        """The identity in a key file (mode 0600; raw hex or an encrypted keystore)."""
        return cls.from_secret(bytes(load_key(path, password).key))


def address_of_public_key(public: coincurve.PublicKey) -> str:
    """The Ethereum address of a secp256k1 public key (checksummed)."""
    return to_checksum_address(keccak(public.format(compressed=False)[1:])[12:])


@functools.lru_cache(maxsize=4096)
def address_of_peer(peer_id: ID) -> str | None:
    """The Ethereum address behind a peer ID, or None when it is not a secp256k1 identity."""
    try:
        key = peer_id.extract_public_key()
    except Exception:  # an ID that embeds no key, or a malformed one: not one of ours
        return None
    if not isinstance(key, Secp256k1PublicKey):
        return None
    return address_of_public_key(key.impl)
