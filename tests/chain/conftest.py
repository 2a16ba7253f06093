"""The contract suite runs twice: on the embedded eth-tester and on a real anvil process."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.launch import embedded, fund
from chain.ledger import ChainParams, Entry, RoundFinal, Web3Ledger, deploy
from chain.signing import attestation_digest, sign

GENESIS = bytes.fromhex("11" * 32)
FLEET_PARAMS = ChainParams(min_peers=2, quorum=2, round_timeout=100, fallback_slot=10,
                           finalize_window=30)


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

    def holder(self, round_: int = 0) -> Web3Ledger:
        """The vehicle whose slot opens ``round_`` (registration order from index round)."""
        order = self.operator.vehicles()
        return next(v for v in self.vehicles
                    if v.account.address == order[round_ % len(order)])

    def entries(self, n: int, seed: int = 0) -> list[Entry]:
        return [Entry(v.account.address, 10 + i, (seed * 100 + i + 1).to_bytes(32, "big"))
                for i, v in enumerate(self.vehicles[:n])]

    def finish(self, round_: int, base: bytes, model: bytes, signers: int = 2) -> RoundFinal:
        """Commit ``round_`` from its first slot and finalise it with ``signers`` attestations."""
        committer = self.holder(round_)
        committer.commit_round(round_, base, model, self.entries(2, round_))
        return committer.finalize_round(round_, model, attest(self.w3, self.address, round_,
                                                              model, self.vehicles[:signers]))


def attest(w3: Web3, contract: str, round_: int, model: bytes,
           signers: list[Web3Ledger]) -> dict[str, bytes]:
    d = attestation_digest(w3.eth.chain_id, bytes.fromhex(contract[2:]), round_, model)
    return {v.account.address: sign(bytes(v.account.key), d) for v in signers}


def finish_alone(ledger: Web3Ledger, round_: int, base: bytes, model: bytes) -> None:
    """Commit and finalise ``round_`` as the only vehicle of a quorum-1 fleet."""
    me = ledger.account.address
    ledger.commit_round(round_, base, model, [Entry(me, 1, (round_ + 1).to_bytes(32, "big"))])
    ledger.finalize_round(round_, model, attest(ledger.w3, ledger.address, round_, model,
                                                [ledger]))


def advance(w3: Web3, seconds: int) -> None:
    """Move the chain's clock on (eth-tester: time travel; anvil: evm_increaseTime)."""
    if w3.eth.accounts and hasattr(w3.provider, "ethereum_tester"):
        tester = w3.provider.ethereum_tester
        tester.time_travel(w3.eth.get_block("latest")["timestamp"] + seconds)
    else:
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def new_account(w3: Web3) -> LocalAccount:
    acct: LocalAccount = Account.create()
    fund(w3, acct.address)
    return acct


def one_vehicle(w3: Web3) -> tuple[str, LocalAccount, LocalAccount]:
    """A fresh contract (min_peers and quorum 1) and its operator and one registered vehicle,
    both funded."""
    op, car = new_account(w3), new_account(w3)
    address = deploy(w3, op, GENESIS)
    Web3Ledger(w3, address, op).register(car.address)
    return address, op, car


@pytest.fixture
def fleet(w3: Web3) -> Fleet:
    """A fresh contract with min_peers and quorum 2 and three registered vehicles."""
    op = new_account(w3)
    address = deploy(w3, op, GENESIS, FLEET_PARAMS)
    operator = Web3Ledger(w3, address, op)
    vehicles = []
    for _ in range(3):
        acct = new_account(w3)
        operator.register(acct.address)
        vehicles.append(Web3Ledger(w3, address, acct))
    return Fleet(w3, address, operator, vehicles, Web3Ledger(w3, address, new_account(w3)))
