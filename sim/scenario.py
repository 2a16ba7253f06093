"""A scenario: a fleet of real processes, its chain, and what happens to it on the way.

One TOML file (``scenarios/*.toml``, ``swarmdrive sim --scenario FILE``), validated here with
the vehicle config's rules: unknown keys are errors and every problem names its key. Pure: the
director (``sim.director``) runs it.

    name = "chaos"
    [fleet]
    vehicles = 8
    rounds = 20
    [chain]
    block_time_s = 2
    [[events]]
    at_round = 4          # once the chain has this many final rounds
    action = "kill"       # SIGKILL vehicle 3's serve and learn
    vehicle = 3

Actions: ``kill`` and ``restart`` (vehicle), ``broker_down`` and ``rpc_down`` (seconds),
``register`` (a new vehicle joins), ``byzantine`` (vehicle, attack: its learner is restarted as
``swarmdrive byzantine``, sending ``sign_flip`` or ``noise`` instead of its delta), and, for a
fleet that serves the operator's releases (``[fleet] ota = "release"``), ``publish`` (the
operator releases the fleet's newest final model with ``swarmdrive release publish``) and
``revoke`` (version: ``swarmdrive release revoke``, once the release has reached every running
vehicle). The operator's commands run one at a time; an event waits for the one before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.config.schema import PositiveFloat, Section, read_toml
from chain.ledger import ChainParams

Action = Literal["kill", "restart", "broker_down", "rpc_down", "register", "byzantine",
                 "publish", "revoke"]
# What each action needs besides ``at_round``.
NEEDS_VEHICLE = ("kill", "restart", "byzantine")
NEEDS_SECONDS = ("broker_down", "rpc_down")
NEEDS_VERSION = ("revoke",)
RELEASES = ("publish", "revoke")


class FleetSpec(Section):
    vehicles: Annotated[int, Field(ge=2, le=64)] = 8
    rounds: Annotated[int, Field(ge=1, le=1000)] = 20
    local_steps: Annotated[int, Field(ge=1, le=10_000)] = 30  # as sim.fleet.FleetConfig
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    lr: PositiveFloat = 3e-3
    cpu_share: Annotated[float, Field(gt=0, le=1)] = 0.5  # of a core, per learner
    train_ahead: bool = True  # training.train_ahead: train on while a round is committed
    # ota.policy: "swarm" serves each final round; "release" serves the operator's releases
    # (the factory model until the first).
    ota: Literal["swarm", "release"] = "swarm"
    seed: Annotated[int, Field(ge=0)] = 0


class ChainSpec(Section):
    block_time_s: Annotated[float, Field(ge=0, le=60)] = 0.0  # 0: a block per transaction
    quorum: Annotated[int, Field(ge=1)] | None = None  # default: a majority of the vehicles
    round_timeout_s: Annotated[int, Field(ge=5)] = 60
    fallback_slot_s: Annotated[int, Field(ge=2)] = 20
    finalize_window_s: Annotated[int, Field(ge=5)] = 60


class Event(Section):
    at_round: Annotated[int, Field(ge=0)]  # fires once the chain has this many final rounds
    action: Action
    vehicle: Annotated[int, Field(ge=0)] | None = None
    seconds: Annotated[float, Field(gt=0, le=600)] | None = None  # how long a service is down
    attack: Literal["sign_flip", "noise"] = "sign_flip"  # what a byzantine vehicle sends
    version: Annotated[int, Field(ge=1)] | None = None  # the release to revoke

    @model_validator(mode="after")
    def _complete(self) -> Event:
        if self.action in NEEDS_VEHICLE and self.vehicle is None:
            raise ValueError(f"{self.action} needs vehicle = N")
        if self.action not in NEEDS_VEHICLE and self.vehicle is not None:
            raise ValueError(f"{self.action} takes no vehicle")
        if self.action in NEEDS_SECONDS and self.seconds is None:
            raise ValueError(f"{self.action} needs seconds = S")
        if self.action not in NEEDS_SECONDS and self.seconds is not None:
            raise ValueError(f"{self.action} takes no seconds")
        if self.action in NEEDS_VERSION and self.version is None:
            raise ValueError(f"{self.action} needs version = N")
        if self.action not in NEEDS_VERSION and self.version is not None:
            raise ValueError(f"{self.action} takes no version")
        return self


class Scenario(Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    description: str = ""
    fleet: FleetSpec = FleetSpec()
    chain: ChainSpec = ChainSpec()
    events: list[Event] = Field(default_factory=list)
    baselines: bool = True  # train each vehicle alone and one central model, for the plots

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        n, rounds = self.fleet.vehicles, self.fleet.rounds
        registered = n + sum(e.action == "register" for e in self.events)
        if self.chain.quorum is not None and self.chain.quorum > n:
            raise ValueError(f"chain.quorum {self.chain.quorum} is more than the "
                             f"{n} vehicles")
        down: set[int] = set()
        published, revoked = 0, set()
        for e in self.ordered_events():
            if e.action in RELEASES and self.fleet.ota != "release":
                raise ValueError(f"{e.action} needs a fleet that serves releases "
                                 '([fleet] ota = "release")')
            if e.action == "publish":
                published += 1
            elif e.action == "revoke":
                if e.version is None or e.version > published:
                    raise ValueError(f"release {e.version} is revoked before it is published "
                                     f"({published} published by round {e.at_round})")
                if e.version in revoked:
                    raise ValueError(f"release {e.version} is revoked twice")
                revoked.add(e.version)
            if e.at_round >= rounds:
                raise ValueError(f"an event at round {e.at_round} never fires: the run "
                                 f"ends after {rounds} rounds")
            if e.vehicle is not None and e.vehicle >= registered:
                raise ValueError(f"{e.action} names vehicle {e.vehicle}; the fleet has "
                                 f"{registered} (0 to {registered - 1})")
            if e.action == "byzantine" and e.vehicle in down:
                raise ValueError(f"vehicle {e.vehicle} turns byzantine while it is killed")
            if e.action == "kill":
                if e.vehicle in down:
                    raise ValueError(f"vehicle {e.vehicle} is killed twice without a restart")
                down.add(e.vehicle)  # type: ignore[arg-type]
            elif e.action == "restart":
                if e.vehicle not in down:
                    raise ValueError(f"vehicle {e.vehicle} is restarted but was not killed")
                down.discard(e.vehicle)  # type: ignore[arg-type]
        return self

    @property
    def params(self) -> ChainParams:
        """The contract's round parameters."""
        c = self.chain
        quorum = c.quorum or self.fleet.vehicles // 2 + 1
        return ChainParams(quorum, quorum, c.round_timeout_s, c.fallback_slot_s,
                           c.finalize_window_s)

    def ordered_events(self) -> list[Event]:
        """The events in the order they fire (by round, then as written)."""
        return sorted(self.events, key=lambda e: e.at_round)


def load(path: Path) -> Scenario:
    """The scenario in ``path``; ``ConfigError`` lists every problem."""
    return read_toml(path, Scenario)
