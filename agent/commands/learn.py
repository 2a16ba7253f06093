"""``swarmdrive learn --config FILE``: the vehicle's swarm member (the swarmdrive-learn unit).

Reads its sources into the sample buffer, trains in the background, takes part in the fleet's
rounds over libp2p and the chain, checkpoints, and installs each final model for the
inference service. sd_notify: READY once it has read the chain and joined the fleet; WATCHDOG
while the round engine runs; STOPPING on SIGTERM, then exit 0 (the checkpoint is written
atomically at each round, so it is intact whenever the process stops); SIGHUP reloads the
buffer's limits and the log level.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import add_command

if TYPE_CHECKING:
    from agent.learn.daemon import LearnDaemon

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "learn", "run the vehicle's learner (swarm member)",
                    "Learn from the vehicle's labelled frames with the fleet: rounds over "
                    "libp2p anchored on the chain; the swarmdrive-learn unit runs this.")
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="the vehicle's TOML config (swarmdrive config example)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, adjust: Callable[[LearnDaemon], None] | None = None) -> int:
    """Run the learner of ``args.config`` until SIGTERM; ``adjust`` sees the daemon before it
    starts (``swarmdrive byzantine``, ``sim.commands.byzantine``, changes its learner)."""
    from agent import logs
    from agent.config import checks
    from agent.config.schema import ConfigError, load

    cfg = load(args.config)
    logs.setup_level(cfg.log_level, args.verbose)
    checks.require(cfg, args.config, checks.for_all(cfg, wait_s=cfg.chain.start_wait_s))

    import torch
    import trio
    from web3 import Web3

    from agent.learn.daemon import LearnDaemon
    from agent.notify import Notifier
    from agent.p2p.announce import Fleet
    from agent.p2p.identity import Identity
    from chain.keys import load_key
    from chain.ledger import Web3Ledger, with_retry

    torch.set_num_threads(cfg.training.threads)
    v = cfg.vehicle
    password = v.key_password_file.read_text().strip() if v.key_password_file else None
    account = load_key(v.key_file, password)
    w3 = Web3(Web3.HTTPProvider(cfg.chain.rpc_url,
                                request_kwargs={"timeout": cfg.chain.timeout_s}))
    # The node answered the config check; if it goes away now, wait for it as every later
    # chain call does.
    chain_id = with_retry(f"chain {cfg.chain.rpc_url}: chain id", lambda: w3.eth.chain_id)
    fleet = Fleet(chain_id, bytes.fromhex(cfg.chain.contract[2:]))
    notifier = Notifier.from_env()
    daemon = LearnDaemon(cfg, notifier, Web3Ledger(w3, cfg.chain.contract, account), fleet,
                         Identity.from_secret(bytes(account.key)))
    if adjust is not None:
        adjust(daemon)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for signum in sigs:
                    if signum != signal.SIGHUP:
                        log.info("stopping signal=%s", signal.Signals(signum).name)
                        notifier.stopping("stopping: " + daemon.status_line())
                        nursery.cancel_scope.cancel()
                        continue
                    try:
                        daemon.reload(load(args.config))
                    except ConfigError as e:
                        log.error("reload_refused %s", e)

    trio.run(main)
    notifier.close()
    # Training may still be running in a worker thread (abandoned on cancel); a normal
    # interpreter exit would tear torch's thread pool down under it (see agent.cli.entry).
    # Every file is written atomically, so leaving now loses nothing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
