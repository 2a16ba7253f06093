"""One key file: the vehicle's peer ID and its Ethereum account."""

from __future__ import annotations

import os

import pytest

from agent.p2p.identity import Identity, address_of_peer
from chain.errors import KeyFileError
from chain.keys import new_key_file


def test_the_key_file_gives_the_same_peer_id_and_account_every_start(tmp_path):
    key = tmp_path / "vehicle.key"
    account = new_key_file(key)
    a, b = Identity.from_key_file(key), Identity.from_key_file(key)
    assert a.address == b.address == account.address
    assert a.peer_id == b.peer_id and str(a.peer_id).startswith("16Uiu2")  # secp256k1
    # Anyone who sees the peer ID knows the account the chain registers: no extra binding.
    assert address_of_peer(a.peer_id) == account.address


def test_a_key_file_others_can_read_is_refused(tmp_path):
    key = tmp_path / "vehicle.key"
    new_key_file(key)
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        Identity.from_key_file(key)
