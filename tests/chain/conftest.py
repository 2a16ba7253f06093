"""The contract suite runs twice: on the embedded eth-tester and on a real anvil process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.launch import Anvil, embedded, fund
from chain.ledger import Web3Ledger, deploy

GENESIS = bytes.fromhex("11" * 32)


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    node = Anvil(tmp_path_factory.mktemp("anvil") / "state.json")
    with node:
        yield node


@pytest.fixture(params=["eth-tester", "anvil"])
def w3(request: pytest.FixtureRequest) -> Web3:
    if request.param == "anvil":
        return request.getfixturevalue("anvil").web3()
    return embedded()


@dataclass
class Fleet:
    w3: Web3
    address: str
    operator: Web3Ledger
    vehicles: list[Web3Ledger]
    outsider: Web3Ledger

    def as_(self, account: LocalAccount) -> Web3Ledger:
        return Web3Ledger(self.w3, self.address, account)


def new_account(w3: Web3) -> LocalAccount:
    acct: LocalAccount = Account.create()
    fund(w3, acct.address)
    return acct


def one_vehicle(w3: Web3) -> tuple[str, LocalAccount, LocalAccount]:
    """A fresh contract (min_peers 1) and its operator and one registered vehicle, both funded."""
    op, car = new_account(w3), new_account(w3)
    address = deploy(w3, op, GENESIS, min_peers=1)
    Web3Ledger(w3, address, op).register(car.address)
    return address, op, car


@pytest.fixture
def fleet(w3: Web3) -> Fleet:
    """A fresh contract with min_peers 2 and three registered vehicles."""
    op = new_account(w3)
    address = deploy(w3, op, GENESIS, min_peers=2)
    operator = Web3Ledger(w3, address, op)
    vehicles = []
    for _ in range(3):
        acct = new_account(w3)
        operator.register(acct.address)
        vehicles.append(Web3Ledger(w3, address, acct))
    return Fleet(w3, address, operator, vehicles, Web3Ledger(w3, address, new_account(w3)))
