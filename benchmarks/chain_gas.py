"""Gas of the fleet contract's transactions, on the embedded EVM and on anvil when installed.

``gas_round_n8_q5`` is everything one round of 8 vehicles at quorum 5 costs on chain: the commit
with 8 entries plus the finalisation carrying 5 attestation signatures (target: under 250k).
Also: registration, commits of 4/8/16/64 entries, finalisations with 5 and 33 signatures (a
majority of 8 and of 64 vehicles), a release.

Prints {"gas_register", "gas_commit_n4", "gas_commit_n8", "gas_commit_n16", "gas_commit_n64",
"gas_finalize_q5", "gas_finalize_q33", "gas_round_n8_q5", "gas_release",
"chain"} as its last line (the anvil figures when anvil runs, else eth-tester's).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.errors import ChainLaunchError
from chain.launch import Anvil, embedded, fund
from chain.ledger import ChainParams, Entry, Web3Ledger, deploy
from chain.signing import attestation_digest, sign


def _round(w3: Web3, op: Web3Ledger, cars: list[LocalAccount], r: int, base: bytes,
           n: int, q: int) -> tuple[int, int, bytes]:
    """Commit round ``r`` with ``n`` entries and finalise it with ``q`` signatures."""
    op.set_params(ChainParams(1, q, 3600, 60, 3600))
    holder = op.contract.functions.slot_holder(w3.eth.get_block("latest")["timestamp"]).call()
    ledger = Web3Ledger(w3, op.address, next(c for c in cars if c.address == holder))
    model = os.urandom(32)
    ledger.commit_round(r, base, model, [Entry(c.address, 1000 + i, os.urandom(32))
                                         for i, c in enumerate(cars[:n])])
    commit = ledger.last_gas_used
    d = attestation_digest(w3.eth.chain_id, bytes.fromhex(op.address[2:]), r, model)
    ledger.finalize_round(r, model, {c.address: sign(bytes(c.key), d) for c in cars[:q]})
    return commit, ledger.last_gas_used, model


def measure(w3: Web3) -> dict[str, int]:
    op = Account.create()
    fund(w3, op.address)
    genesis = os.urandom(32)
    operator = Web3Ledger(w3, deploy(w3, op, genesis), op)
    cars: list[LocalAccount] = [Account.create() for _ in range(64)]
    out: dict[str, int] = {}
    for i, car in enumerate(cars):
        fund(w3, car.address)
        operator.register(car.address)
        if i == 0:
            out["gas_register"] = operator.last_gas_used
    base = genesis
    # Quorum must be a majority of the 64 registered vehicles for the larger runs, so the small
    # ones revoke down to 8 vehicles first (the 8-vehicle round is the headline figure).
    for r, (n, q) in enumerate([(64, 33), (16, 33)]):
        out[f"gas_commit_n{n}"], fin, base = _round(w3, operator, cars, r, base, n, q)
        out["gas_finalize_q33"] = fin
    for car in cars[8:]:
        operator.revoke(car.address)
    cars = cars[:8]
    out["gas_commit_n4"], out["gas_finalize_q5"], base = _round(w3, operator, cars, 2, base, 4, 5)
    out["gas_commit_n8"], fin, base = _round(w3, operator, cars, 3, base, 8, 5)
    out["gas_round_n8_q5"] = out["gas_commit_n8"] + fin
    operator.publish_release(1, os.urandom(32), 400_000, 2, "https://ota.example/fleet/v1.onnx")
    out["gas_release"] = operator.last_gas_used
    return out


def main() -> None:
    result = {"chain": "eth-tester", **measure(embedded())}
    print(f"eth-tester: {result}", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory() as tmp, Anvil(Path(tmp, "state.json")) as node:
            result = {"chain": "anvil", **measure(node.web3())}
    except ChainLaunchError as e:
        print(f"anvil not measured: {e}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
