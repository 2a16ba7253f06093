"""Argument types and up-front checks shared by the subcommands.

Every value is checked when it is parsed, and every output path before any work starts, so a
mistake costs a second, not a training run.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


class UsageError(ValueError):
    """Arguments that parse but do not make sense together (exit code 2, like argparse's)."""


class OutputPathError(OSError):
    """An output path that cannot be written; raised before any work is done."""


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (either bound may be open)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not {_range_words(lo, hi)}")
        return value
    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        if not math.isfinite(value) or low_bad or (hi is not None and value > hi):
            words = _range_words(lo, hi)
            if lo_open:
                words = f"above {lo}" + (f" and at most {hi}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"{text} is not a number {words}")
        return value
    parse.__name__ = "number"
    return parse


def _range_words(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    if lo is not None:
        return "a positive integer" if lo == 1 else f"at least {lo}"
    return f"at most {hi}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or action.required:
            return action.help or ""
        return super()._get_help_string(action) or ""


def add_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,  # type: ignore[type-arg]
                name: str, summary: str, description: str | None = None,
                parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """A subcommand parser with the common flags whose ``--help`` shows every default."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description or summary, parents=[common, *parents],
        formatter_class=HelpFormatter)
    return parser


positive_int = int_range(1)
non_negative_int = int_range(0)


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision``: the training arithmetic (``models.train.use_bf16`` resolves it)."""
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="training arithmetic: bf16 is ~1.5x faster on a CPU with "
                        "AVX512-BF16 or AMX and ~10x slower on one without; auto picks by this CPU")


def _probe_dir(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".swarmdrive-probe-")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise OutputPathError(f"{what} {folder}: a file is in the way of this folder") from None
    except OSError as e:
        raise OutputPathError(f"{what} {folder}: cannot write there "
                              f"({e.strerror or type(e).__name__})") from None


def check_output_file(path: Path, flag: str = "--out") -> Path:
    """``path`` can be written as a file (an existing file is replaced atomically)."""
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; name the file to write")
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"{flag} {path}: name the file to write")
    _probe_dir(path.parent if str(path.parent) else Path("."), flag)
    return path


def check_output_dir(path: Path, flag: str = "--out") -> Path:
    """``path`` is (or can become) a folder this process can write into."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file; name a folder")
    _probe_dir(path, flag)
    return path
