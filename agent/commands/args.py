"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """Arguments that parse but do not make sense together (exit code 2, like argparse's)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value
