"""``swarmdrive serve --config FILE``: the inference service (one of a vehicle's two units).

Answers the perception stack on the config's Unix socket with the model the learner (or OTA)
installed, switching models without failing a request. sd_notify: READY once a model is loaded
and the socket is open; WATCHDOG after each probe inference; STOPPING on SIGTERM, then exit 0;
SIGHUP looks for a new model at once. Never imports torch, libp2p or web3.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from agent.commands.args import add_command

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "serve", "run the inference service",
                    "Serve the installed model to the perception stack over a Unix socket "
                    "(docs/spec/serve-v1.md); the swarmdrive-serve unit runs this.")
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="the vehicle's TOML config (swarmdrive config example)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import trio

    from agent import logs
    from agent.config import checks
    from agent.config.schema import load
    from agent.notify import Notifier
    from agent.serve.server import Server

    cfg = load(args.config)
    checks.require(cfg, args.config, checks.for_serve(cfg))
    logs.setup_level(cfg.log_level, args.verbose)
    notifier = Notifier.from_env()
    server = Server(cfg, notifier)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for signum in sigs:
                    if signum == signal.SIGHUP:
                        server.reload()
                        continue
                    log.info("stopping signal=%s", signal.Signals(signum).name)
                    notifier.stopping("stopping: " + server.status_line())
                    nursery.cancel_scope.cancel()

    trio.run(main)
    notifier.close()
    return 0
