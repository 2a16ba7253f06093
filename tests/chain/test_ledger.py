"""SwarmLedger through the client: membership, permissions, rounds and releases."""

from __future__ import annotations

import os

import pytest

from chain.compile import compile_ledger, load_artifact
from chain.errors import LedgerRevert
from chain.merkle import merkle_root
from tests.chain.conftest import GENESIS


def h(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_artifact_matches_a_fresh_compile():
    fresh, committed = compile_ledger(), load_artifact()
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["abi"] == committed["abi"]


def test_status_after_deploy(fleet):
    st = fleet.operator.status()
    assert st.operator == fleet.operator.account.address
    assert st.min_peers == 2 and st.vehicle_count == 3
    assert st.genesis_hash == GENESIS == st.latest_model
    assert st.rounds_committed == 0 and st.release_count == 0
    assert all(fleet.operator.is_vehicle(v.account.address) for v in fleet.vehicles)
    assert not fleet.operator.is_vehicle(fleet.outsider.account.address)


def test_rounds_chain_from_genesis(fleet):
    a, b = fleet.vehicles[:2]
    c0 = a.commit_round(0, GENESIS, h(100), [h(3), h(1), h(2)])
    c1 = b.commit_round(1, h(100), h(101), [h(7), h(5)])
    st = fleet.operator.status()
    assert st.rounds_committed == 2 and st.latest_model == h(101)
    assert fleet.operator.round_model(0) == h(100)
    events = fleet.operator.commitments()
    assert [e.round for e in events] == [0, 1]
    assert events[0].contributions == (h(1), h(2), h(3))  # canonical ascending order
    assert events[0].contributions_root == merkle_root([h(1), h(2), h(3)]) == \
        c0.contributions_root
    assert events[1].committer == b.account.address and events[1].base_hash == h(100)
    assert c1.contributions_root == events[1].contributions_root


def test_only_registered_vehicles_commit(fleet):
    with pytest.raises(LedgerRevert, match="sender is not a registered vehicle"):
        fleet.outsider.commit_round(0, GENESIS, h(1), [h(1), h(2)])
    with pytest.raises(LedgerRevert, match="sender is not a registered vehicle"):
        fleet.operator.commit_round(0, GENESIS, h(1), [h(1), h(2)])
    v = fleet.vehicles[0]
    fleet.operator.revoke(v.account.address)
    with pytest.raises(LedgerRevert, match="sender is not a registered vehicle"):
        v.commit_round(0, GENESIS, h(1), [h(1), h(2)])
    assert fleet.operator.status().vehicle_count == 2


def test_invalid_commits_are_rejected_with_reasons(fleet):
    a, b = fleet.vehicles[:2]
    a.commit_round(0, GENESIS, h(100), [h(1), h(2)])
    with pytest.raises(LedgerRevert, match="round already committed"):
        b.commit_round(0, GENESIS, h(999), [h(1), h(2)])  # the first valid commit won
    with pytest.raises(LedgerRevert, match="base hash is not the previous model"):
        b.commit_round(1, GENESIS, h(101), [h(1), h(2)])
    with pytest.raises(LedgerRevert, match="round is not the next one"):
        b.commit_round(2, h(100), h(102), [h(1), h(2)])
    with pytest.raises(LedgerRevert, match="fewer contributions than min_peers"):
        b.commit_round(1, h(100), h(101), [h(1)])
    assert fleet.operator.status().rounds_committed == 1
    assert fleet.operator.round_model(0) == h(100)


def test_contributions_must_be_distinct(fleet):
    with pytest.raises(LedgerRevert, match="strictly ascending"):
        fleet.vehicles[0].commit_round(0, GENESIS, h(1), [h(5), h(5)])


def test_only_the_operator_administers(fleet):
    v = fleet.vehicles[0]
    someone = fleet.outsider.account.address
    for action in (lambda: v.register(someone), lambda: v.revoke(fleet.vehicles[1].account.address),
                   lambda: v.set_min_peers(1), lambda: v.transfer_operator(someone),
                   lambda: v.publish_release(1, h(9), 0, "x"), lambda: v.revoke_release(1)):
        with pytest.raises(LedgerRevert, match="only the operator"):
            action()
    with pytest.raises(LedgerRevert, match="already registered"):
        fleet.operator.register(v.account.address)
    with pytest.raises(LedgerRevert, match="not registered"):
        fleet.operator.revoke(someone)


def test_operator_role_transfers(fleet):
    new = fleet.outsider
    fleet.operator.transfer_operator(new.account.address)
    assert fleet.operator.status().operator == new.account.address
    with pytest.raises(LedgerRevert, match="only the operator"):
        fleet.operator.register(os.urandom(20).hex())
    new.set_min_peers(1)
    assert new.status().min_peers == 1


def test_releases(fleet):
    op = fleet.operator
    with pytest.raises(LedgerRevert, match="source round is not committed"):
        op.publish_release(1, h(50), 0, "https://ota.example/v1.onnx")
    fleet.vehicles[0].commit_round(0, GENESIS, h(100), [h(1), h(2)])
    op.publish_release(1, h(50), 0, "https://ota.example/v1.onnx")
    with pytest.raises(LedgerRevert, match="release version must be the next one"):
        op.publish_release(3, h(51), 0, "x")
    rel = op.release(1)
    assert (rel.onnx_sha256, rel.source_round, rel.uri, rel.revoked) == \
        (h(50), 0, "https://ota.example/v1.onnx", False)
    op.revoke_release(1)
    assert op.release(1).revoked
    with pytest.raises(LedgerRevert, match="already revoked"):
        op.revoke_release(1)
    with pytest.raises(LedgerRevert, match="no such release"):
        op.release(2)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_merkle_root_matches_the_contract(fleet, n):
    fleet.operator.set_min_peers(1)
    leaves = sorted(os.urandom(32) for _ in range(n))
    c = fleet.vehicles[0].commit_round(0, GENESIS, h(1), leaves)
    assert fleet.operator.commitments()[0].contributions_root == merkle_root(leaves) == \
        c.contributions_root
