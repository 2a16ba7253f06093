"""Running small libp2p fleets in tests: real hosts on 127.0.0.1, a real EVM, the daemon's
round engine, and whatever a test does beside them (an attacker, an operator)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import trio

from agent.swarm.driver import Vehicle
from chain.ledger import RoundCommitment
from models.codec import CodecConfig
from sim.fleet import FleetConfig, FleetData
from sim.netfleet import NetFleet, summarise

SMALL = FleetConfig(vehicles=3, rounds=4, local_steps=3, batch_size=16, frames_per_weather=6,
                    test_frames_per_domain=1, codec=CodecConfig(0.1, 8))

# Hang guards, not speed targets: a loaded 2-core CI machine meets them with a wide margin.
# The tests wait on events (a round final, a vehicle done), never on the clock.
DEADLINE_S = 600.0

Extra = Callable[[NetFleet, list[Vehicle], trio.Nursery], Awaitable[None]]


def fleet_data(data: FleetData, n: int) -> FleetData:
    return replace(data, profiles=data.profiles[:n], train=data.train[:n])


def run_fleet(fleet: NetFleet, extra: Extra | None = None, n: int | None = None,
              vehicles: list[Vehicle] | None = None) -> list[Vehicle]:
    """Run vehicles 0..n-1 (default: all) to the last round, with ``extra`` beside them."""
    if vehicles is None:
        vehicles = [fleet.vehicle(i) for i in range(fleet.cfg.vehicles if n is None else n)]

    async def main() -> None:
        with trio.fail_after(DEADLINE_S):
            async with trio.open_nursery() as nursery:
                for v in vehicles:
                    nursery.start_soon(v.run)
                if extra is not None:
                    nursery.start_soon(extra, fleet, vehicles, nursery)
                for v in vehicles:
                    await v.done.wait()
                nursery.cancel_scope.cancel()

    trio.run(main)
    return vehicles


async def wait_until(pred: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.02)


def final_commitments(fleet: NetFleet) -> list[RoundCommitment]:
    """The commitment each final round was finalised from, in round order."""
    ledger = fleet.ledger()
    finals = {f.round: f.model_hash for f in ledger.finals(0)}
    out: dict[int, RoundCommitment] = {}
    for c in ledger.commitments(0):
        if finals.get(c.round) == c.model_hash:
            out[c.round] = c
    return [out[r] for r in sorted(out)]


def assert_fleet_agrees(fleet: NetFleet, vehicles: list[Vehicle], verified: bool = True
                        ) -> None:
    """Every vehicle ends on the chain's final model, which it verified itself (or, with
    ``verified=False``, may have fetched: a quorum finalised it while it was catching up)."""
    result = summarise(fleet, vehicles, [], 0.0)
    assert {v["model_hash"] for v in result.vehicles.values()} == {result.chain_model_hash}
    assert all(v.last_round is not None and (v.last_round.verified or not verified)
               for v in vehicles)
    assert len(final_commitments(fleet)) == fleet.cfg.rounds
