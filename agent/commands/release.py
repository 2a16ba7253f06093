"""``swarmdrive release``: the operator's OTA releases on the fleet contract (docs/spec/ota-v1.md).

``publish`` names an ONNX file of a final round on chain (a checkpoint is exported on the
spot), after checking that its weights are that round's model; ``revoke`` withdraws one;
``list`` prints them. Every file, URL and address is checked before the first request.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.commands.args import UsageError, add_command, check_output_file, non_negative_int
from agent.commands.chain import (
    chain_options,
    ledger_for,
    need,
    print_json,
    read_password,
    signing_ledger,
    web3_for,
)

if TYPE_CHECKING:
    from models.detector import FrameNet
    from models.net import CropNet

MAX_URI_BYTES = 256  # the contract's bound


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "release", "publish, revoke and list OTA model releases",
                    "The fleet's OTA model releases: every vehicle following releases fetches, "
                    "verifies and installs the newest one that is not revoked.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                               parser_class=type(p))
    rpc, contract, key = chain_options()
    a = add_command(actions, common, "publish", "name a final round's model as the next release",
                    parents=(rpc, contract, key))
    a.add_argument("--round", type=non_negative_int, required=True, metavar="N",
                   help="the final round whose model this is")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, metavar="FILE", help="the model, from 'swarmdrive "
                     "export' of round N's checkpoint")
    src.add_argument("--checkpoint", type=Path, metavar="FILE",
                     help="round N's checkpoint (a vehicle's learner.ckpt or 'swarmdrive train' "
                          "output), exported to ONNX here")
    a.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="where to write the released ONNX file (the bytes vehicles will fetch: "
                        "put it on the mirror)")
    a.add_argument("--uri", default="", metavar="URL",
                   help="HTTP(S) mirror the vehicles may fetch it from (default: fleet peers "
                        "only)")
    a.set_defaults(run=publish)
    a = add_command(actions, common, "revoke", "withdraw a release; vehicles serving it move "
                    "back to the newest good one", parents=(rpc, contract, key))
    a.add_argument("version", type=non_negative_int, metavar="VERSION")
    a.set_defaults(run=revoke)
    a = add_command(actions, common, "list", "every release, one JSON line each",
                    parents=(rpc, contract))
    a.set_defaults(run=list_releases)
    a = add_command(actions, common, "seed", "serve release files to the fleet's vehicles over "
                    "libp2p until stopped (the key must be a vehicle or an observer)",
                    parents=(rpc, contract, key))
    a.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="release files ('release publish --out'), each a release on chain")
    a.add_argument("--listen", default="/ip4/0.0.0.0/tcp/4002", metavar="MULTIADDR",
                   help="where to listen")
    a.add_argument("--bootstrap", nargs="*", default=[], metavar="MULTIADDR",
                   help="vehicles to dial: /ip4/HOST/tcp/PORT/p2p/PEER_ID")
    a.set_defaults(run=seed)


def _check_uri(uri: str) -> str:
    if not uri:
        return uri
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--uri {uri!r} is not an http(s):// URL")
    if len(uri.encode()) > MAX_URI_BYTES:
        raise UsageError(f"--uri is {len(uri.encode())} bytes; the contract takes at most "
                         f"{MAX_URI_BYTES}")
    return uri


def _model_file(args: argparse.Namespace) -> Path:
    path: Path = args.onnx or args.checkpoint
    flag = "--onnx" if args.onnx else "--checkpoint"
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    return path


def release_bytes(args: argparse.Namespace) -> tuple[bytes, str]:
    """The ONNX bytes to release, stamped with the round, and the weights' model hash."""
    import onnx

    from models.errors import ModelFileError
    from models.onnx_format import META_PREFIX

    if args.checkpoint:
        from models.onnx_export import to_onnx

        proto = to_onnx(*_checkpoint_net(args.checkpoint))
    else:
        try:
            proto = onnx.load_from_string(args.onnx.read_bytes())
        except Exception as e:  # protobuf raises its own DecodeError and others
            raise ModelFileError(f"--onnx {args.onnx}: not an ONNX model "
                                 f"({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    model_hash = meta.get(META_PREFIX + "model_hash")
    if model_hash is None:
        raise ModelFileError(f"{args.onnx}: no swarmdrive metadata (export it with "
                             "'swarmdrive export')")
    meta[META_PREFIX + "round"] = str(args.round)
    del proto.metadata_props[:]
    for k, v in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    return proto.SerializeToString(), model_hash


def _checkpoint_net(path: Path) -> tuple[CropNet | FrameNet, tuple[str, ...]]:
    """The network in a 'swarmdrive train' checkpoint or a vehicle's ``learner.ckpt``."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.classes import CLASSES
    from models.errors import CheckpointError
    from models.family import FAMILIES
    from models.layout import ModelLayout

    try:
        model, ckpt = load_checkpoint(path)
        return model, tuple(ckpt["classes"])
    except CheckpointError as e:
        first = e
    try:  # a vehicle's learner checkpoint: the flat weights of its last final round
        flat = torch.load(path, map_location="cpu", weights_only=True)["model"].numpy()
        for family in FAMILIES.values():  # whichever the fleet learns: their sizes differ
            net = family.new_model()
            layout = ModelLayout.of(net.state_dict())
            if layout.size == flat.size:
                net.load_state_dict(layout.unflatten(flat))
                return net.eval(), tuple(CLASSES)
    except Exception:  # torch.load and load_state_dict raise many types on foreign files
        pass
    raise first


def publish(args: argparse.Namespace) -> int:
    import hashlib

    from chain.errors import LedgerError

    uri = _check_uri(args.uri)
    _model_file(args)
    check_output_file(args.out)
    ledger = signing_ledger(args)
    status = ledger.status()
    if args.round >= status.rounds_final:
        raise UsageError(f"--round {args.round} is not final yet ({status.rounds_final} rounds "
                         "are final)")
    data, model_hash = release_bytes(args)
    on_chain = ledger.round_model(args.round).hex()
    if model_hash != on_chain:
        raise UsageError(f"the model's weights {model_hash[:12]} are not round {args.round}'s "
                         f"final model {on_chain[:12]} on chain")
    from models.atomic import atomic_write_bytes

    atomic_write_bytes(args.out, data)
    version = status.release_count + 1
    sha = hashlib.sha256(data).digest()
    try:
        ledger.publish_release(version, sha, len(data), args.round, uri)
    except LedgerError:
        args.out.unlink(missing_ok=True)
        raise
    print_json({"version": version, "onnx_sha256": sha, "size": len(data),
                "source_round": args.round, "uri": uri, "out": str(args.out)})
    return 0


def revoke(args: argparse.Namespace) -> int:
    version = need(args.version, "VERSION", "revoke", "the release to withdraw")
    ledger = signing_ledger(args)
    ledger.revoke_release(version)
    print_json(asdict(ledger.release(version)))
    return 0


def seed(args: argparse.Namespace) -> int:
    import hashlib
    import signal

    import trio
    from pydantic import ValidationError

    from agent import logs
    from agent.config.schema import P2P
    from agent.ota.seed import seed as run_seed
    from agent.p2p.announce import Fleet
    from agent.p2p.identity import Identity
    from agent.swarm.chainview import AsyncLedger
    from chain.keys import load_key

    try:  # the vehicle config's own rules for these addresses
        P2P(listen=args.listen, bootstrap=args.bootstrap)
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(f"--{err['loc'][0]}: {err['msg'].removeprefix('Value error, ')}"
                         ) from None
    for path in args.files:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    account = load_key(need(args.keystore, "--keystore FILE", "seed",
                            "the key the node runs under"), read_password(args))
    w3 = web3_for(args)
    ledger = ledger_for(args, w3, None)
    if not (ledger.is_vehicle(account.address) or account.address in ledger.observers()):
        raise UsageError(f"account {account.address} is neither a vehicle nor an observer of "
                         f"this fleet, so no vehicle would talk to it: the operator runs "
                         f"'swarmdrive chain observe {account.address}' first")
    releases = {ledger.release(v).onnx_sha256 for v in range(1, ledger.status().release_count
                                                              + 1)}
    files = {}
    for path in args.files:
        data = path.read_bytes()
        key = hashlib.sha256(data).digest()
        if key not in releases:
            raise UsageError(f"{path}: its sha256 names no release on chain")
        files[key] = data
    fleet = Fleet(int(w3.eth.chain_id), bytes.fromhex(ledger.address[2:]))
    identity = Identity.from_secret(bytes(account.key))
    logs.setup_level("info", args.verbose)  # a long-running node: say what it serves, to whom

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_seed, identity, fleet, AsyncLedger(ledger), files,
                               args.listen, tuple(args.bootstrap))
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    trio.run(main)
    return 0


def list_releases(args: argparse.Namespace) -> int:
    ledger = ledger_for(args, web3_for(args), None)
    for v in range(1, ledger.status().release_count + 1):
        print_json(asdict(ledger.release(v)))
    return 0
