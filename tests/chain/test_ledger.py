"""SwarmLedger through the client: membership, slots, quorum finality, expiry and releases."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from chain import ledger as ledger_module
from chain.compile import compile_ledger, load_artifact
from chain.errors import LedgerRevert
from chain.ledger import ChainParams, Entry, MemberChange, members
from chain.merkle import entry_leaf, merkle_root
from chain.signing import SECP256K1_N
from tests.chain.conftest import FLEET_PARAMS, GENESIS, advance, attest


def h(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_artifact_matches_a_fresh_compile():
    fresh, committed = compile_ledger(), load_artifact()
    assert fresh["bytecode"] == committed["bytecode"]
    assert fresh["abi"] == committed["abi"]


def test_status_after_deploy(fleet):
    st = fleet.operator.status()
    assert st.operator == fleet.operator.account.address
    assert st.params == FLEET_PARAMS and st.vehicle_count == 3
    assert st.genesis_hash == GENESIS == st.latest_model
    assert st.rounds_final == 0 and st.release_count == 0 and st.opened_at > 0
    assert fleet.operator.vehicles() == [v.account.address for v in fleet.vehicles]
    assert not fleet.operator.is_vehicle(fleet.outsider.account.address)


def test_a_round_is_final_only_with_a_quorum_of_attestations(fleet):
    committer = fleet.holder(0)
    c = committer.commit_round(0, GENESIS, h(100), fleet.entries(3))
    assert [e.sender for e in c.contributions] == sorted(
        (v.account.address for v in fleet.vehicles), key=lambda a: int(a, 16))
    leaves = [entry_leaf(e.sender, e.samples, e.payload_hash) for e in c.contributions]
    assert c.contributions_root == merkle_root(leaves)
    assert fleet.operator.commitments() == [c]
    st = fleet.operator.status()
    assert st.rounds_final == 0 and st.latest_model == GENESIS  # committed is not final
    one = attest(fleet.w3, fleet.address, 0, h(100), fleet.vehicles[:1])
    with pytest.raises(LedgerRevert, match="fewer signatures than the quorum"):
        committer.finalize_round(0, h(100), one)
    final = fleet.outsider.finalize_round(0, h(100), attest(fleet.w3, fleet.address, 0, h(100),
                                                            fleet.vehicles))
    assert sorted(final.signers) == sorted(v.account.address for v in fleet.vehicles)
    st = fleet.operator.status()
    assert st.rounds_final == 1 and st.latest_model == h(100)
    assert st.opened_at == final.finalized_at
    assert fleet.operator.round_model(0) == h(100)
    assert fleet.operator.finals() == [final]


def test_the_next_round_builds_only_on_a_final_round(fleet):
    fleet.holder(0).commit_round(0, GENESIS, h(100), fleet.entries(2))
    with pytest.raises(LedgerRevert, match="round is not the open one"):
        fleet.holder(1).commit_round(1, h(100), h(101), fleet.entries(2))
    fleet.holder(0).finalize_round(0, h(100), attest(fleet.w3, fleet.address, 0, h(100),
                                                     fleet.vehicles[:2]))
    with pytest.raises(LedgerRevert, match="round already final"):
        fleet.holder(0).commit_round(0, GENESIS, h(999), fleet.entries(2))
    with pytest.raises(LedgerRevert, match="base hash is not the last final model"):
        fleet.holder(1).commit_round(1, GENESIS, h(101), fleet.entries(2))
    fleet.finish(1, h(100), h(101))
    assert fleet.operator.status().latest_model == h(101)


def test_only_the_slot_holder_commits(fleet):
    holder = fleet.holder(0)
    others = [v for v in fleet.vehicles if v is not holder]
    for v in [*others, fleet.outsider, fleet.operator]:
        with pytest.raises(LedgerRevert, match=r"slot|not a registered vehicle"):
            v.commit_round(0, GENESIS, h(1), fleet.entries(2))
    # After round_timeout + fallback_slot the next vehicle in the order has the slot, alone.
    advance(fleet.w3, FLEET_PARAMS.round_timeout + FLEET_PARAMS.fallback_slot)
    order = fleet.operator.vehicles()
    with pytest.raises(LedgerRevert, match="not this vehicle's slot"):
        holder.commit_round(0, GENESIS, h(1), fleet.entries(2))
    fleet.as_(next(v.account for v in fleet.vehicles if v.account.address == order[1])
              ).commit_round(0, GENESIS, h(1), fleet.entries(2))


def test_a_live_commit_cannot_be_overtaken(fleet):
    fleet.operator.set_params(ChainParams(2, 2, round_timeout=100, fallback_slot=10,
                                          finalize_window=600))
    fleet.holder(0).commit_round(0, GENESIS, h(100), fleet.entries(2))
    advance(fleet.w3, 110)  # slot 1 now ...
    order = fleet.operator.vehicles()
    rival = next(v for v in fleet.vehicles if v.account.address == order[1])
    with pytest.raises(LedgerRevert, match="awaiting quorum"):  # ... but a commit is live
        rival.commit_round(0, GENESIS, h(666), fleet.entries(2))


def test_an_unfinalised_commit_expires_and_the_next_vehicle_commits_again(fleet):
    first = fleet.holder(0)
    first.commit_round(0, GENESIS, h(666), fleet.entries(2))
    advance(fleet.w3, FLEET_PARAMS.finalize_window)
    late = attest(fleet.w3, fleet.address, 0, h(666), fleet.vehicles)
    with pytest.raises(LedgerRevert, match="no commit awaiting quorum"):
        first.finalize_round(0, h(666), late)
    with pytest.raises(LedgerRevert, match="not this vehicle's slot"):
        first.commit_round(0, GENESIS, h(667), fleet.entries(2))  # its slot moved on
    order = fleet.operator.vehicles()
    nxt = next(v for v in fleet.vehicles if v.account.address == order[1])
    nxt.commit_round(0, GENESIS, h(100), fleet.entries(2))
    nxt.finalize_round(0, h(100), attest(fleet.w3, fleet.address, 0, h(100), fleet.vehicles))
    assert fleet.operator.status().latest_model == h(100)
    assert [c.model_hash for c in fleet.operator.commitments()] == [h(666), h(100)]


def test_commitments_must_bind_distinct_registered_senders(fleet):
    v = fleet.holder(0)
    e = fleet.entries(3)
    outsider = Entry(fleet.outsider.account.address, 5, h(9))
    cases = [
        ([e[0], e[0]], "strictly ascending"),
        ([e[0], outsider], "sender is not registered"),
        ([e[0], Entry(e[1].sender, 0, h(9))], "no samples"),
        ([e[0], Entry(e[1].sender, 3, bytes(32))], "payload hash is zero"),
        ([e[0]], "fewer contributions than min_peers"),
    ]
    for entries, reason in cases:
        with pytest.raises(LedgerRevert, match=reason):
            v.commit_round(0, GENESIS, h(1), entries)
    with pytest.raises(LedgerRevert, match="model hash is zero"):
        v.commit_round(0, GENESIS, bytes(32), e)
    with pytest.raises(LedgerRevert, match="no-op"):
        v.commit_round(0, GENESIS, GENESIS, e)


def test_finalisation_checks_every_signature(fleet):
    fleet.holder(0).commit_round(0, GENESIS, h(100), fleet.entries(2))
    good = attest(fleet.w3, fleet.address, 0, h(100), fleet.vehicles[:2])
    stranger = Account.create()
    bad_signer = attest(fleet.w3, fleet.address, 0, h(100), [fleet.vehicles[0],
                                                             fleet.as_(stranger)])
    other_model = attest(fleet.w3, fleet.address, 0, h(101), fleet.vehicles[:2])
    (a, sig), (b, sig_b) = sorted(good.items(), key=lambda kv: int(kv[0], 16))
    s = int.from_bytes(sig_b[32:64], "big")
    high_s = sig_b[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig_b[64] ^ 1])
    v = fleet.vehicles[2]
    with pytest.raises(LedgerRevert, match="not a registered vehicle"):
        v.finalize_round(0, h(100), bad_signer)
    with pytest.raises(LedgerRevert, match="not the pending commit's"):
        v.finalize_round(0, h(101), other_model)
    with pytest.raises(LedgerRevert, match="high"):
        v.finalize_round(0, h(100), {a: sig, b: high_s})
    with pytest.raises(LedgerRevert, match=r"registered|ascending"):  # another model's signature
        v.finalize_round(0, h(100), {a: sig, b: other_model[b]})
    assert fleet.operator.status().rounds_final == 0
    v.finalize_round(0, h(100), good)
    assert fleet.operator.status().rounds_final == 1


def test_parameters_stay_within_safe_bounds(fleet):
    op = fleet.operator
    for params, reason in [
        (ChainParams(min_peers=0, quorum=2), "min_peers"),
        (ChainParams(min_peers=4, quorum=2), "min_peers"),
        (ChainParams(min_peers=2, quorum=1), "quorum must be a majority"),
        (ChainParams(min_peers=2, quorum=4), "quorum must be a majority"),
        (ChainParams(min_peers=2, quorum=2, round_timeout=0), "round_timeout"),
        (ChainParams(min_peers=2, quorum=2, finalize_window=10**6), "finalize_window"),
    ]:
        with pytest.raises(LedgerRevert, match=reason):
            op.set_params(params)
    op.set_params(ChainParams(min_peers=3, quorum=3, round_timeout=5, fallback_slot=2,
                              finalize_window=4))
    assert op.status().params == ChainParams(3, 3, 5, 2, 4)


def test_only_the_operator_administers(fleet):
    v = fleet.vehicles[0]
    someone = fleet.outsider.account.address
    for action in (lambda: v.register(someone), lambda: v.revoke(fleet.vehicles[1].account.address),
                   lambda: v.set_params(FLEET_PARAMS), lambda: v.propose_operator(someone),
                   lambda: v.set_observer(someone, True),
                   lambda: v.publish_release(1, h(9), 100, 0, "x"), lambda: v.revoke_release(1)):
        with pytest.raises(LedgerRevert, match="only the operator"):
            action()
    with pytest.raises(LedgerRevert, match="already registered"):
        fleet.operator.register(v.account.address)
    with pytest.raises(LedgerRevert, match="not registered"):
        fleet.operator.revoke(someone)


def test_the_operator_role_moves_in_two_steps(fleet):
    new = fleet.outsider
    with pytest.raises(LedgerRevert, match="only the proposed operator"):
        new.accept_operator()
    fleet.operator.propose_operator(new.account.address)
    assert fleet.operator.status().operator == fleet.operator.account.address  # not yet
    new.accept_operator()
    assert fleet.operator.status().operator == new.account.address
    with pytest.raises(LedgerRevert, match="only the operator"):
        fleet.operator.register(os.urandom(20).hex())
    with pytest.raises(LedgerRevert, match="only the proposed operator"):
        fleet.operator.accept_operator()


def test_revocation_keeps_the_rotation_order_in_step_with_the_events(fleet, monkeypatch):
    # Pages of 2: the listing must stitch pages together (the contract allows up to 256).
    monkeypatch.setattr(ledger_module, "MEMBERS_PAGE", 2)
    op = fleet.operator
    extra = [Account.create().address for _ in range(3)]
    for a in extra:
        op.register(a)
    before, before_block = op.vehicles(), op.head()
    op.revoke(fleet.vehicles[1].account.address)
    op.revoke(extra[2])  # the last one: nothing moves
    op.revoke(fleet.vehicles[0].account.address)
    on_chain = [op.contract.functions.vehicle_at(i).call() for i in range(op.status().
                                                                           vehicle_count)]
    changes = [e for e in op.events(0, op.head()) if isinstance(e, MemberChange)]
    assert op.vehicles() == on_chain == members(changes)
    assert fleet.vehicles[1].account.address not in on_chain
    assert op.vehicles(before_block) == before != on_chain  # a snapshot of an older block
    op.set_observer(extra[2], True)
    assert op.observers() == [extra[2]]
    with pytest.raises(LedgerRevert, match="is an observer"):
        op.register(extra[2])
    assert members([]) == []


def test_the_observer_list_follows_its_events_through_removals(fleet, monkeypatch):
    monkeypatch.setattr(ledger_module, "MEMBERS_PAGE", 2)
    op = fleet.operator
    obs = [Account.create().address for _ in range(5)]
    for a in obs:
        op.set_observer(a, True)
    op.set_observer(obs[1], True)  # again: no duplicate
    op.set_observer(obs[1], False)  # the last moves into its place
    op.set_observer(obs[4], False)
    op.set_observer(obs[4], False)  # again: nothing to remove
    op.set_observer(obs[0], False)
    changes = [e for e in op.events(0, op.head()) if isinstance(e, MemberChange)]
    assert op.observers() == members(changes, role="observer") == [obs[2], obs[3]]
    assert int(op.contract.functions.observer_count().call()) == 2
    assert op.contract.functions.observers(5, 3).call() == []  # past the end: empty
    # A plain web3 call: eth-tester and anvil raise their own errors.
    with pytest.raises((ContractLogicError, TransactionFailed), match="count must be at most 256"):
        op.contract.functions.vehicles(0, 257).call()


def test_the_open_rounds_first_block_is_found_without_reading_logs(fleet):
    op = fleet.operator
    final = fleet.finish(0, GENESIS, h(1))
    for a in (Account.create().address for _ in range(3)):  # blocks after the opening
        op.register(a)
    head, opened = op.head(), op.status().opened_at
    first = op.first_block_at(opened, head)
    times = [int(fleet.w3.eth.get_block(b)["timestamp"]) for b in range(head + 1)]
    assert first == next(b for b, t in enumerate(times) if t >= opened)
    assert first <= final.block  # the finalisation's own events are read
    assert op.first_block_at(times[-1] + 1000, head) == head  # none that late: the head


def test_releases_name_final_rounds(fleet):
    op = fleet.operator
    with pytest.raises(LedgerRevert, match="source round is not final"):
        op.publish_release(1, h(50), 1000, 0, "https://ota.example/v1.onnx")
    fleet.finish(0, GENESIS, h(100))
    for size in (0, 64 * 2**20 + 1):
        with pytest.raises(LedgerRevert, match="release size out of bounds"):
            op.publish_release(1, h(50), size, 0, "x")
    op.publish_release(1, h(50), 1000, 0, "https://ota.example/v1.onnx")
    with pytest.raises(LedgerRevert, match="release version must be the next one"):
        op.publish_release(3, h(51), 1000, 0, "x")
    rel = op.release(1)
    assert (rel.onnx_sha256, rel.size, rel.source_round, rel.uri, rel.revoked) == \
        (h(50), 1000, 0, "https://ota.example/v1.onnx", False)
    op.revoke_release(1)
    assert op.release(1).revoked
    with pytest.raises(LedgerRevert, match="already revoked"):
        op.revoke_release(1)
    with pytest.raises(LedgerRevert, match="no such release"):
        op.release(2)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_merkle_root_matches_the_contract(fleet, n):
    op = fleet.operator
    accounts = [Account.create() for _ in range(n)]
    for a in accounts:
        op.register(a.address)
    op.set_params(ChainParams(1, op.status().vehicle_count // 2 + 1, 100, 10, 30))
    entries = [Entry(a.address, 1 + i, os.urandom(32)) for i, a in enumerate(accounts)]
    c = fleet.holder(0).commit_round(0, GENESIS, h(1), entries)
    leaves = [entry_leaf(e.sender, e.samples, e.payload_hash)
              for e in sorted(entries, key=lambda e: int(e.sender, 16))]
    assert op.commitments()[0].contributions_root == merkle_root(leaves) == c.contributions_root
