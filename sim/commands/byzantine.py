"""``swarmdrive byzantine --config FILE``: a vehicle's learner that lies, for scenarios.

It is the vehicle's own learner (its key, its config, the real daemon), except that every
delta is replaced by an attack (``sim.attacks``) before it is compressed and announced: the
fleet sees a registered member that follows the protocol and lies about its training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.args import add_command

if TYPE_CHECKING:
    from agent.learn.daemon import LearnDaemon

ATTACKS = ("sign_flip", "noise")  # what one vehicle can mount from its own delta alone


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "byzantine", "run a vehicle's learner that lies (simulation)",
                    "Run the learner of --config with every delta replaced by an attack: a "
                    "stolen vehicle key in a scenario.")
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="the vehicle's TOML config")
    p.add_argument("--attack", choices=ATTACKS, default="sign_flip", help="what it sends")
    p.set_defaults(run=run)


def poison(daemon: LearnDaemon, kind: str) -> None:
    """Make ``daemon``'s learner send ``kind`` instead of its delta."""
    import numpy as np

    from sim.attacks import attack

    learner = daemon.learner
    honest = learner.train_round
    rng = np.random.default_rng(int(daemon.identity.address, 16) % 2**32)

    def train_round(base: np.ndarray, local_steps: int) -> tuple[np.ndarray, float]:
        delta, loss = honest(base, local_steps)
        return attack(kind, delta, [delta], 1, 0, rng), loss

    learner.train_round = train_round  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from agent.commands import learn

    return learn.run(args, adjust=lambda daemon: poison(daemon, args.attack))
