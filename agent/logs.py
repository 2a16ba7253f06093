"""Logging: one line per event, ``event key=value ...``, readable in journald."""

from __future__ import annotations

import logging
import sys


def setup(verbosity: int = 0) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING - 10 * min(verbosity, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def setup_level(name: str, verbosity: int = 0) -> None:
    """A daemon's logging: the config's ``log_level``, or more with -v."""
    setup(0)
    level = min(logging.getLevelName(name.upper()), logging.WARNING - 10 * min(verbosity, 2))
    logging.getLogger().setLevel(level)
    logging.getLogger("libp2p").setLevel(max(level, logging.WARNING))  # its info is chatter
