"""secp256k1 signatures as the fleet uses them, and the attestation digest.

Every signed thing (announcements, attestations) is raw ECDSA over a 32-byte keccak digest, no
EIP-191 prefix. Signatures are 65 bytes, r ‖ s ‖ v with v 0 or 1, and s in the lower half of
the group order (EIP-2): the high-s twin of a valid signature is refused, here and on chain.

An attestation is a vehicle's word that it recomputed a round's model bit for bit: it signs
``attestation_digest(chain_id, contract, round, model_hash)``, which the contract's
``finalize_round`` rebuilds (big-endian words, as the EVM sees them) to recover every signer.
"""

from __future__ import annotations

import coincurve
from eth_utils import keccak, to_checksum_address

DOMAIN = b"swarmdrive attestation v1\x00"
SIGNATURE_SIZE = 65
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SignatureError(ValueError):
    """A signature that is malformed, malleable or does not recover."""


def attestation_digest(chain_id: int, contract: bytes, round_: int, model_hash: bytes) -> bytes:
    if len(contract) != 20 or len(model_hash) != 32:
        raise ValueError("contract must be 20 bytes and model_hash 32")
    return keccak(DOMAIN + chain_id.to_bytes(32, "big") + contract + round_.to_bytes(32, "big")
                  + model_hash)


def sign(secret: bytes, message_digest: bytes) -> bytes:
    """r ‖ s ‖ v (v 0/1); libsecp256k1 always produces low s."""
    return bytes(coincurve.PrivateKey(secret).sign_recoverable(message_digest, hasher=None))


def recover(message_digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``message_digest``; raises ``SignatureError``."""
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"signature is {len(signature)} bytes, not {SIGNATURE_SIZE}")
    if signature[64] not in (0, 1):
        raise SignatureError(f"signature v is {signature[64]}, must be 0 or 1")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= SECP256K1_N // 2:
        raise SignatureError("signature s is zero or high (malleable)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(signature, message_digest,
                                                                hasher=None)
    except Exception as e:  # coincurve raises ValueError or its own errors on a bad signature
        raise SignatureError(f"signature does not recover ({e})") from None
    return to_checksum_address(keccak(public.format(compressed=False)[1:])[12:])
