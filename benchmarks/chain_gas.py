"""Gas of the fleet contract's transactions, on the embedded EVM and on anvil when installed.

Prints {"gas_register", "gas_commit_n4", "gas_commit_n16", "gas_commit_n64", "gas_release",
"chain"} as its last line (the anvil figures when anvil runs, else eth-tester's).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from eth_account import Account
from web3 import Web3

from chain.errors import ChainLaunchError
from chain.launch import Anvil, embedded, fund
from chain.ledger import Web3Ledger, deploy


def measure(w3: Web3) -> dict[str, int]:
    op, car = Account.create(), Account.create()
    fund(w3, op.address)
    fund(w3, car.address)
    genesis = os.urandom(32)
    operator = Web3Ledger(w3, deploy(w3, op, genesis, min_peers=1), op)
    operator.register(car.address)
    out = {"gas_register": operator.last_gas_used}
    ledger = Web3Ledger(w3, operator.address, car)
    base = genesis
    for r, n in enumerate((4, 16, 64)):
        model = os.urandom(32)
        ledger.commit_round(r, base, model, [os.urandom(32) for _ in range(n)])
        out[f"gas_commit_n{n}"] = ledger.last_gas_used
        base = model
    operator.publish_release(1, os.urandom(32), 2, "https://ota.example/fleet/v1.onnx")
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
