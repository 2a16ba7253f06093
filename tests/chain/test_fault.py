"""The chain endpoint goes away in the middle of a run of commits and comes back."""

from __future__ import annotations

import threading
import time

import pytest

from chain.launch import Anvil
from chain.ledger import Web3Ledger
from tests.chain.conftest import GENESIS, finish_alone, one_vehicle

ROUNDS = 8


@pytest.mark.slow
def test_anvil_restart_loses_and_doubles_no_commit(tmp_path):
    node = Anvil(tmp_path / "state.json").start()
    try:
        w3 = node.web3()
        address, _, car = one_vehicle(w3)
        ledger = Web3Ledger(w3, address, car)
        done: list[int] = []
        errors: list[BaseException] = []

        def commit_all() -> None:
            base = GENESIS
            try:
                for r in range(ROUNDS):
                    model = (1000 + r).to_bytes(32, "big")
                    finish_alone(ledger, r, base, model)
                    done.append(r)
                    base = model
                    time.sleep(0.05)
            except BaseException as e:  # surfaced by the assertion below
                errors.append(e)

        worker = threading.Thread(target=commit_all)
        worker.start()
        deadline = time.monotonic() + 30
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        node.stop()  # mid-sequence: the client is committing the next rounds
        stopped_at = len(done)
        time.sleep(1.0)
        node.start()  # same port, state reloaded from the dump
        worker.join(timeout=120)
        assert not worker.is_alive() and not errors, errors
        assert stopped_at < ROUNDS  # the outage really hit the sequence
        assert done == list(range(ROUNDS))
        status = ledger.status()
        assert status.rounds_final == ROUNDS
        assert status.latest_model == (1000 + ROUNDS - 1).to_bytes(32, "big")
        rounds = [c.round for c in ledger.commitments()]
        assert rounds == list(range(ROUNDS))  # each round committed exactly once
    finally:
        node.stop()
