"""The ``swarmdrive`` command line: parse, dispatch, and turn every error into one line.

Every known error (unknown town, corrupt image, bad model file, ...) ends the command with a
single ``swarmdrive: error: ...`` line naming the thing and the problem, and an exit code from
``agent.exit_codes``; anything unexpected gets one line and the INTERNAL code, with the
traceback only under ``--debug``.

Start-up stays fast: a command module imports only argparse at the top and its heavy
dependencies (torch, web3, libp2p) inside ``run``. The vehicle's own commands are listed here;
other installed packages add theirs through the ``swarmdrive.commands`` entry-point group (the
simulator's ``sim`` and ``render``), so the vehicle never imports the simulator.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from types import ModuleType
from typing import NoReturn

from agent import logs
from agent.commands import chain, config, export, infer, learn, release, serve, train
from agent.exit_codes import ExitCode, exit_code_for

COMMANDS_GROUP = "swarmdrive.commands"  # entry points: a module with add_parser(sub) and run


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, with where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(int(ExitCode.USAGE), f"swarmdrive: error: {self.prog}: {message} "
                                       f"(see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return version("swarmdrive")
    except PackageNotFoundError:
        return "unknown (not installed)"


def command_modules() -> list[ModuleType]:
    """The subcommands: installed packages' first (the simulator), then the vehicle's."""
    plugins = sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)
    return [ep.load() for ep in plugins] + [train, export, infer, serve, learn, chain, release,
                                            config]


def _global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="log more (-v info, -vv debug)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of an unexpected error")


def build_parser() -> Parser:
    parser = Parser(prog="swarmdrive",
                    description="Swarm learning for vehicle fleets: simulate a fleet, train, "
                                "export and serve models, manage the fleet contract.")
    _global_flags(parser, None)
    parser.set_defaults(verbose=0, debug=False)
    # The same flags after the subcommand; SUPPRESS so that, when absent there, they do not
    # reset what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"swarmdrive {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for module in command_modules():
        module.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _closed_pipe()
    except BaseExceptionGroup as group:  # trio's nurseries wrap what their tasks raise
        if group.subgroup(KeyboardInterrupt) is not None:
            return _interrupted()
        leaf = _first_leaf(group)
        if isinstance(leaf, Exception):
            return _failed(leaf, args.debug, group)
        raise
    except Exception as e:
        return _failed(e, args.debug, e)


def _first_leaf(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _failed(error: Exception, debug: bool, shown: BaseException) -> int:
    known = exit_code_for(error)
    if debug:
        traceback.print_exception(shown)
    if known is None:
        text = str(error).strip().splitlines()
        detail = f": {text[0][:200]}" if text else ""
        print(f"swarmdrive: error: internal error, {type(error).__name__}{detail} (a bug: please "
              "report it; --debug shows the traceback)", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    print(f"swarmdrive: error: {error}", file=sys.stderr)
    return int(known)


def _interrupted() -> int:
    print("swarmdrive: interrupted", file=sys.stderr)
    return int(ExitCode.INTERRUPTED)


def _closed_pipe() -> int:
    # The reader went away (``| head``): nothing more to say. Point stdout at /dev/null so
    # Python's flush at exit does not fail again (the recipe in the signal module's docs).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def entry() -> None:
    """Console-script entry point."""
    code = main()
    if code == ExitCode.INTERRUPTED:
        # Worker threads may still be inside torch or ONNX Runtime; a normal interpreter exit
        # tears their C++ thread pools down under them and aborts (SIGABRT). Every file we
        # write is atomic, so leaving at once loses nothing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


__all__ = ["ExitCode", "entry", "main"]
