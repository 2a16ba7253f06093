"""``swarmdrive chain``: deploy the fleet contract, manage membership, read rounds and releases."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from web3 import Web3

from agent.commands.args import UsageError
from chain.keys import load_key, new_key_file
from chain.ledger import Web3Ledger, deploy

RPC_ENV, CONTRACT_ENV = "SWARMDRIVE_RPC", "SWARMDRIVE_CONTRACT"
CLI_RPC_RETRIES = 3  # a person at a terminal wants a quick answer, not a minute of backoff
ACTIONS = ("keygen", "deploy", "register", "revoke", "status", "rounds", "releases")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("chain", help="the fleet contract: deploy, membership, rounds, releases")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("address", nargs="?", help="vehicle address (register, revoke)")
    p.add_argument("--rpc", default=os.environ.get(RPC_ENV),
                   help=f"JSON-RPC endpoint, e.g. http://127.0.0.1:8545 (or {RPC_ENV})")
    p.add_argument("--contract", default=os.environ.get(CONTRACT_ENV),
                   help=f"SwarmLedger address (or {CONTRACT_ENV})")
    p.add_argument("--keystore", type=Path, help="key file (mode 0600) that signs transactions")
    p.add_argument("--password-file", type=Path, help="password of an encrypted keystore")
    p.add_argument("--genesis", default="00" * 32, help="deploy: genesis model hash (hex)")
    p.add_argument("--min-peers", type=int, default=2, help="deploy: contributions per round")
    p.add_argument("--from-block", type=int, default=0, help="rounds: first block to read")
    p.set_defaults(run=run)


def _need(value: Any, flag: str, action: str, what: str) -> Any:
    if value is None:
        raise UsageError(f"chain {action} needs {flag} ({what})")
    return value


def _hex32(text: str, name: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise UsageError(f"{name} must be 32 bytes of hex, got {text!r}")
    return raw


def _out(obj: Any) -> None:
    def enc(v: Any) -> Any:
        return "0x" + v.hex() if isinstance(v, bytes) else v

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return enc(v)
    print(json.dumps(walk(obj)))


def run(args: argparse.Namespace) -> int:
    action = args.action
    password = args.password_file.read_text().strip() if args.password_file else None
    if action == "keygen":
        path = _need(args.keystore, "--keystore FILE", action, "where to write the new key")
        _out({"address": new_key_file(path, password).address, "keystore": str(path)})
        return 0
    rpc = _need(args.rpc, "--rpc URL", action, f"the chain's JSON-RPC endpoint, or set {RPC_ENV}")
    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 10}))
    writes = action in ("deploy", "register", "revoke")
    account = None
    if writes:
        key = _need(args.keystore, "--keystore FILE", action, "the key that signs the transaction")
        account = load_key(key, password)
    if action == "deploy":
        assert account is not None
        genesis = _hex32(args.genesis, "--genesis")
        address = deploy(w3, account, genesis, args.min_peers, retries=CLI_RPC_RETRIES)
        _out({"contract": address, "operator": account.address})
        return 0
    contract = _need(args.contract, "--contract ADDRESS", action,
                     f"the SwarmLedger address, or set {CONTRACT_ENV}")
    if not Web3.is_address(contract):
        raise UsageError(f"--contract {contract!r} is not an address")
    ledger = Web3Ledger(w3, contract, account, retries=CLI_RPC_RETRIES)
    if action in ("register", "revoke"):
        vehicle = _need(args.address, "a vehicle ADDRESS", action, "the vehicle's account")
        if not Web3.is_address(vehicle):
            raise UsageError(f"{vehicle!r} is not an address")
        (ledger.register if action == "register" else ledger.revoke)(vehicle)
        _out({action: vehicle, "vehicle_count": ledger.status().vehicle_count})
    elif action == "status":
        _out(asdict(ledger.status()))
    elif action == "rounds":
        for c in ledger.commitments(from_block=args.from_block):
            _out(asdict(c))
    elif action == "releases":
        for v in range(1, ledger.status().release_count + 1):
            _out(asdict(ledger.release(v)))
    return 0
