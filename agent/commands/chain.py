"""``swarmdrive chain``: deploy the fleet contract, manage membership, read rounds.

One subcommand per action, each with its own help. Every address, hash, URL and file is checked
before the first request; web3 is imported only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.commands.args import UsageError, add_command, int_range, non_negative_int

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from chain.ledger import ChainParams, Web3Ledger

RPC_ENV, CONTRACT_ENV = "SWARMDRIVE_RPC", "SWARMDRIVE_CONTRACT"
CLI_RPC_RETRIES = 3  # a person at a terminal wants a quick answer, not a minute of backoff
CLI_RPC_TIMEOUT_S = 5.0  # per request: 3 attempts end well within 30 s on a hung endpoint
MAX_CONTRIBUTIONS = 64  # the contract's bound on a round's contributions
DEV_CHAIN_IDS = (31337, 1337)  # anvil/hardhat and geth --dev: test ETH is free there


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "chain", "the fleet contract: deploy, membership, rounds",
                    "The fleet's SwarmLedger contract: keys, deployment, membership and rounds "
                    "(releases: 'swarmdrive release').")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                               parser_class=type(p))
    rpc, contract, key = chain_options()

    def action(name: str, summary: str, *parents: argparse.ArgumentParser
               ) -> argparse.ArgumentParser:
        return add_command(actions, common, name, summary, parents=parents)

    a = action("keygen", "write a new key file (mode 0600) for a vehicle or the operator", key)
    a.set_defaults(run=keygen)
    params = argparse.ArgumentParser(add_help=False)
    params.add_argument("--min-peers", type=int_range(1, MAX_CONTRIBUTIONS), default=1,
                        help="contributions a round needs")
    params.add_argument("--quorum", type=int_range(1, MAX_CONTRIBUTIONS), default=1,
                        help="distinct vehicles whose attestations make a round final; once "
                             "vehicles are registered it must be a majority of them")
    params.add_argument("--round-timeout", type=int_range(1, 86400), default=120, metavar="S",
                        help="seconds of the first committer's slot (plus one fallback slot)")
    params.add_argument("--fallback-slot", type=int_range(1, 86400), default=20, metavar="S",
                        help="seconds of each later committer's slot")
    params.add_argument("--finalize-window", type=int_range(1, 86400), default=60, metavar="S",
                        help="seconds a commit has to reach the quorum before it expires")
    a = action("deploy", "deploy a new SwarmLedger; the signing key becomes its operator",
               rpc, key, params)
    a.add_argument("--genesis", metavar="factory|HEX|FILE",
                   help="the model round 0 starts from: 'factory' (the model 'swarmdrive learn' "
                        "ships with for the default training.model; 'factory:detector' or "
                        "'factory:classifier' to name it), its hash (32 bytes hex), or a "
                        "checkpoint from 'swarmdrive train' (.pt)")
    a.set_defaults(run=deploy)
    a = action("params", "set the fleet's round parameters (checked against the registered "
               "vehicles)", rpc, contract, key, params)
    a.set_defaults(run=set_params)
    a = action("observe", "let an account connect to the fleet's vehicles without being one",
               rpc, contract, key)
    a.add_argument("address", metavar="ACCOUNT", help="the observer's account (0x...)")
    a.add_argument("--remove", action="store_true", help="take the permission back")
    a.set_defaults(run=observe)
    a = action("propose-operator", "step 1 of handing the operator role to another account",
               rpc, contract, key)
    a.add_argument("address", metavar="ACCOUNT", help="the new operator's account (0x...)")
    a.set_defaults(run=propose_operator)
    a = action("accept-operator", "step 2: the proposed account takes the operator role",
               rpc, contract, key)
    a.set_defaults(run=accept_operator)
    for name, summary in (("register", "admit a vehicle's account to the fleet"),
                          ("revoke", "remove a vehicle's account from the fleet")):
        a = action(name, summary, rpc, contract, key)
        a.add_argument("address", metavar="VEHICLE", help="the vehicle's account (0x...)")
        a.set_defaults(run=membership)
    a = action("fund", "send test ETH to an account on a local dev chain (anvil)", rpc)
    a.add_argument("address", metavar="ACCOUNT", help="the account to fund (0x...)")
    a.add_argument("--eth", type=int_range(1, 10_000), default=100, help="how much ETH")
    a.set_defaults(run=fund)
    a = action("status", "the contract's operator, parameters and counters", rpc, contract)
    a.set_defaults(run=status)
    a = action("rounds", "every committed round, one JSON line each", rpc, contract)
    a.add_argument("--from-block", type=non_negative_int, default=0,
                   help="first block to read")
    a.set_defaults(run=rounds)


def chain_options() -> tuple[argparse.ArgumentParser, ...]:
    """The ``--rpc``, ``--contract`` and ``--keystore``/``--password-file`` option groups,
    as parent parsers (``swarmdrive release`` uses them too)."""
    rpc = argparse.ArgumentParser(add_help=False)
    rpc.add_argument("--rpc", default=os.environ.get(RPC_ENV), metavar="URL",
                     help=f"JSON-RPC endpoint, http(s)://HOST:PORT (or set {RPC_ENV})")
    contract = argparse.ArgumentParser(add_help=False)
    contract.add_argument("--contract", default=os.environ.get(CONTRACT_ENV), metavar="ADDRESS",
                          help=f"SwarmLedger address (or set {CONTRACT_ENV})")
    key = argparse.ArgumentParser(add_help=False)
    key.add_argument("--keystore", type=Path, metavar="FILE",
                     help="key file (mode 0600) that signs transactions")
    key.add_argument("--password-file", type=Path, metavar="FILE",
                     help="file holding the password of an encrypted keystore")
    return rpc, contract, key


def need(value: Any, flag: str, action: str, what: str) -> Any:
    """``value``, or a ``UsageError`` saying which flag the action needs and why."""
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


def _address(text: str | None, flag: str, action: str, what: str) -> str:
    from web3 import Web3

    value: str = need(text, flag, action, what)
    if not Web3.is_address(value):
        raise UsageError(f"{flag.split()[0]} {value!r} is not an address (0x and 40 hex digits)")
    return str(Web3.to_checksum_address(value))


def web3_for(args: argparse.Namespace) -> Web3:
    """A web3 client for ``--rpc`` (checked: an http(s) URL with a sane port)."""
    url = need(args.rpc, "--rpc URL", args.action,
               f"the chain's JSON-RPC endpoint, or set {RPC_ENV}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--rpc {url!r} is not an http(s)://HOST[:PORT] URL")
    try:
        parts.port  # noqa: B018  # raises on a malformed port
    except ValueError:
        raise UsageError(f"--rpc {url!r} has a malformed port") from None
    from web3 import Web3

    # No provider-level retries: the ledger's own retry decides, so a hung endpoint fails in
    # CLI_RPC_RETRIES * CLI_RPC_TIMEOUT_S seconds, not minutes.
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": CLI_RPC_TIMEOUT_S},
                                  exception_retry_configuration=None))


def read_password(args: argparse.Namespace) -> str | None:
    """The keystore password from ``--password-file``, if one is given."""
    from chain.errors import KeyFileError

    path: Path | None = args.password_file
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise KeyFileError(f"password file {path}: no such file") from None
    except IsADirectoryError:
        raise KeyFileError(f"password file {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"password file {path}: cannot read ({e})") from None


def _signer(args: argparse.Namespace) -> LocalAccount:
    from chain.keys import load_key

    path = need(args.keystore, "--keystore FILE", args.action,
                "the key that signs the transaction")
    return load_key(path, read_password(args))


def signing_ledger(args: argparse.Namespace) -> Web3Ledger:
    """The contract, with the signer's key, once the signer is known to be able to pay gas."""
    w3, account = web3_for(args), _signer(args)
    ledger = ledger_for(args, w3, account)
    _funded(w3, account)
    return ledger


def _funded(w3: Web3, account: LocalAccount) -> None:
    """Refuse early, with the way out, when the signer cannot pay for gas."""
    from chain.errors import NoFundsError
    from chain.ledger import with_retry

    balance = with_retry("balance", lambda: w3.eth.get_balance(account.address), CLI_RPC_RETRIES)
    if balance == 0:
        raise NoFundsError(f"account {account.address} has no ETH on this chain to pay for gas: "
                          f"on anvil run 'swarmdrive chain fund {account.address} --rpc URL'; on "
                          "a real network send it ETH from a funded wallet")


def ledger_for(args: argparse.Namespace, w3: Web3, account: LocalAccount | None) -> Web3Ledger:
    """The ``--contract`` SwarmLedger, signing with ``account`` if one is given."""
    from chain.ledger import Web3Ledger

    address = _address(args.contract, "--contract ADDRESS", args.action,
                       f"the SwarmLedger address, or set {CONTRACT_ENV}")
    return Web3Ledger(w3, address, account, retries=CLI_RPC_RETRIES)


def print_json(obj: Any) -> None:
    """One JSON line on stdout, bytes as 0x-hex."""
    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return "0x" + v.hex() if isinstance(v, bytes) else v
    print(json.dumps(walk(obj)), flush=True)


def keygen(args: argparse.Namespace) -> int:
    from chain.keys import new_key_file

    path = need(args.keystore, "--keystore FILE", args.action, "where to write the new key")
    print_json({"address": new_key_file(path, read_password(args)).address, "keystore": str(path)})
    return 0


def _params(args: argparse.Namespace) -> ChainParams:
    from chain.ledger import ChainParams

    return ChainParams(args.min_peers, args.quorum, args.round_timeout, args.fallback_slot,
                       args.finalize_window)


def _genesis(text: str | None) -> bytes:
    value: str = need(text, "--genesis factory|HEX|FILE", "deploy",
                      "the model every vehicle starts from: its hash, or a checkpoint")
    kind, _, model = value.partition(":")
    if kind == "factory":
        from agent.config.schema import Training

        model = model or Training().model
        if model not in ("detector", "classifier"):
            raise UsageError(f"--genesis {value}: the factory model is 'factory:detector' or "
                             "'factory:classifier'")
        from agent.learn.daemon import factory_hash
        from models.family import FAMILIES

        return bytes.fromhex(factory_hash(FAMILIES[model]))
    if value.endswith(".pt") and not Path(value).is_file():
        raise UsageError(f"--genesis {value}: no such checkpoint file")
    if not Path(value).is_file():
        genesis = _hex32(value, "--genesis")
        if genesis == bytes(32):
            raise UsageError("--genesis must not be zero: name the model the fleet starts from")
        return genesis
    from models.checkpoint import load_checkpoint

    _, ckpt = load_checkpoint(Path(value))
    return bytes.fromhex(ckpt["model_hash"])


def deploy(args: argparse.Namespace) -> int:
    from chain.ledger import deploy as deploy_ledger

    w3, account = web3_for(args), _signer(args)
    genesis = _genesis(args.genesis)
    _funded(w3, account)
    address = deploy_ledger(w3, account, genesis, _params(args), retries=CLI_RPC_RETRIES)
    print_json({"contract": address, "operator": account.address, "genesis": genesis.hex()})
    return 0


def set_params(args: argparse.Namespace) -> int:
    ledger = signing_ledger(args)
    ledger.set_params(_params(args))
    print_json(asdict(ledger.status().params))
    return 0


def observe(args: argparse.Namespace) -> int:
    observer = _address(args.address, "ACCOUNT", args.action, "the observer's account")
    ledger = signing_ledger(args)
    ledger.set_observer(observer, not args.remove)
    print_json({"observers": ledger.observers()})
    return 0


def propose_operator(args: argparse.Namespace) -> int:
    new = _address(args.address, "ACCOUNT", args.action, "the new operator's account")
    ledger = signing_ledger(args)
    ledger.propose_operator(new)
    print_json({"operator": ledger.account.address, "proposed": new})
    return 0


def accept_operator(args: argparse.Namespace) -> int:
    ledger = signing_ledger(args)
    ledger.accept_operator()
    print_json({"operator": ledger.status().operator})
    return 0


def membership(args: argparse.Namespace) -> int:
    vehicle = _address(args.address, "VEHICLE", args.action, "the vehicle's account")
    ledger = signing_ledger(args)
    (ledger.register if args.action == "register" else ledger.revoke)(vehicle)
    print_json({args.action: vehicle, "vehicle_count": ledger.status().vehicle_count})
    return 0


def fund(args: argparse.Namespace) -> int:
    from web3 import Web3

    from chain.errors import LedgerError
    from chain.launch import fund as send_eth
    from chain.ledger import with_retry

    account = _address(args.address, "ACCOUNT", args.action, "the account to fund")
    w3 = web3_for(args)
    chain_id = with_retry("chain id", lambda: w3.eth.chain_id, CLI_RPC_RETRIES)
    if chain_id not in DEV_CHAIN_IDS:
        raise UsageError(f"chain fund works on local dev chains only (chain id "
                         f"{' or '.join(map(str, DEV_CHAIN_IDS))}); this is chain {chain_id}: "
                         "send real ETH from a funded wallet")
    with_retry("fund", lambda: send_eth(w3, account, args.eth * 10**18), CLI_RPC_RETRIES)
    balance = with_retry("balance", lambda: w3.eth.get_balance(Web3.to_checksum_address(account)),
                         CLI_RPC_RETRIES)
    if balance < args.eth * 10**18:
        raise LedgerError(f"fund {account}: the transfer did not arrive")
    print_json({"account": account, "balance_wei": balance})
    return 0


def status(args: argparse.Namespace) -> int:
    print_json(asdict(ledger_for(args, web3_for(args), None).status()))
    return 0


def rounds(args: argparse.Namespace) -> int:
    from chain.ledger import RoundCommitment, RoundFinal

    ledger = ledger_for(args, web3_for(args), None)
    for e in ledger.events(args.from_block, ledger.head()):
        if isinstance(e, RoundCommitment | RoundFinal):
            print_json({"event": "committed" if isinstance(e, RoundCommitment) else "final",
                        **asdict(e)})
    return 0

