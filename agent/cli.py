"""The ``swarmdrive`` command line: parse, dispatch, and turn known errors into one line.

Every known error (unknown town, corrupt image, bad model file, ...) ends the command with a
single ``swarmdrive: error: ...`` line naming the thing and the problem, and an exit code from
``agent.exit_codes``; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import logs
from agent.commands import chain, export, infer, render, sim, train
from agent.exit_codes import ExitCode, exit_code_for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmdrive",
        description="Swarm learning for vehicle fleets: sim, train, export and serve models.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sim, render, train, export, infer, chain):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        print("swarmdrive: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        known = exit_code_for(e)
        if known is None:
            raise
        print(f"swarmdrive: error: {e}", file=sys.stderr)
        return int(known)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["ExitCode", "entry", "main"]
