"""``swarmdrive config``: check a vehicle config, or print a commented example.

``check`` reports every problem on its own line, named by its key path, and exits with the
CONFIG code; the daemons run the same checks at start and refuse the same configs.
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

from agent.commands.args import add_command


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "config", "check a vehicle config, or print an example",
                    "Check a vehicle's TOML config (schema, key file, state folder, chain), "
                    "or print a commented example.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="report every problem of a config file",
                               parents=[common])
    check.add_argument("config", type=Path, metavar="FILE")
    check.add_argument("--offline", action="store_true",
                       help="do not contact the chain's RPC endpoint")
    check.set_defaults(run=run_check)
    example = actions.add_parser("example", help="print a commented example config",
                                 parents=[common])
    example.set_defaults(run=run_example)


def example_text() -> str:
    return files("agent.config").joinpath("example.toml").read_text()


def run_check(args: argparse.Namespace) -> int:
    from agent.config import checks
    from agent.config.schema import ConfigError, load
    from agent.exit_codes import ExitCode

    try:
        cfg = load(args.config)
        problems = checks.for_all(cfg, probe=not args.offline)
    except ConfigError as e:
        problems = e.problems
    for problem in problems:
        print(f"swarmdrive: error: config {args.config}: {problem}", file=sys.stderr)
    if problems:
        return int(ExitCode.CONFIG)
    print(f"config {args.config}: ok")
    return 0


def run_example(args: argparse.Namespace) -> int:
    sys.stdout.write(example_text())
    return 0
