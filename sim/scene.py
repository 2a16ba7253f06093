"""Who is where: the population of a town along the ego vehicle's route, with no pixels.

Theory of operation. The ego vehicle drives a straight route at the town's speed, so at frame
``t`` it is at ``s_ego(t) = start + speed * t`` metres along the road. Everything else lives in
*streams*: a lateral position and a speed along the road (parked cars and signs stand still,
traffic in our direction is slower than us, oncoming traffic comes at us, pedestrians stroll).
A stream's actors are spawned per 10 m *cell* of the stream's own moving coordinate, from a
random generator seeded by (seed, town, stream, cell). An actor spawned at ``s0`` is at
``s0 + v t`` at frame ``t``, so consecutive frames see the same actors a little further on:
the frames are correlated as a real drive is, and any frame can be produced on its own from
(seed, town, frame index). Junctions every ``town.intersection_every`` metres add signals and
actors crossing the road, seen from the side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from sim.actors import SKIN, Look
from sim.world import SIGNALS, TOWNS, VEHICLES, WALKERS, Town

CELL_M = 10.0  # metres of stream per spawn cell
NEAR_M = 2.5  # nothing closer than this is placed in view (the bonnet hides it)
FAR_M = 70.0  # beyond this, nothing is drawn
JUNCTION_CROSS_M = 28.0  # half-width of the span where crossing actors move


@dataclass(frozen=True)
class Actor:
    """One thing in view at one frame."""

    kind: str  # a class of ``sim.world.CLASSES`` or a clutter kind of ``sim.actors.CLUTTER``
    x: float  # metres to the right of the road's centre line
    z: float  # metres ahead of the camera
    pose: str  # "rear", "front" or "side"
    look: Look
    labelled: bool  # clutter is drawn and occludes, but is not a class


@dataclass(frozen=True)
class Building:
    """A facade along the road between ``z0`` and ``z1`` metres ahead."""

    x: float
    z0: float
    z1: float
    height: float
    colour: tuple[int, int, int]
    floors: int


@dataclass(frozen=True)
class Stream:
    """Actors moving along the road at one lateral band and one speed."""

    lateral: tuple[float, ...]  # positions an actor may take, metres
    speed: float  # metres per frame along the road
    kinds: tuple[str, ...]
    rate: float  # expected actors per cell per unit of class weight
    poses: tuple[str, ...]
    labelled: bool = True


def road_half_width(town: Town) -> float:
    return town.lanes_each_way * town.lane_width


def ego_lateral(town: Town) -> float:
    """The camera drives in our innermost lane."""
    return 0.5 * town.lane_width


def _streams(town: Town) -> tuple[Stream, ...]:
    lw, half, v = town.lane_width, road_half_width(town), town.ego_speed
    ours = tuple((i + 0.5) * lw for i in range(town.lanes_each_way))
    theirs = tuple(-x for x in ours)
    kerb = half + 1.0
    walk = half + max(town.sidewalk, 2.0) * 0.5 + (0.0 if town.sidewalk else 1.0)
    side = half + town.sidewalk + 0.6
    road_users = (*VEHICLES, "bicycle")
    return (
        Stream(ours, 0.7 * v, road_users, 0.05 * len(ours), ("rear",)),
        Stream(theirs, -0.8 * v, road_users, 0.04 * len(theirs), ("front",)),
        Stream((kerb,), 0.0, road_users, 0.03, ("rear",)),
        Stream((-kerb,), 0.0, road_users, 0.02, ("front",)),
        Stream((walk, -walk), 0.12, WALKERS, 0.07, ("front", "rear", "side")),
        Stream((walk, -walk), -0.12, WALKERS, 0.07, ("front", "rear", "side")),
        Stream((side,), 0.0, SIGNALS, 0.02, ("front",)),
        Stream((-side,), 0.0, SIGNALS, 0.015, ("rear", "side")),
        # Unlabelled clutter: class weight 1, rates per cell from the town.
        Stream((side + 2.5, -side - 2.5, side + 5.0, -side - 5.0), 0.0, ("tree",),
               town.trees_per_10m / 2, ("front",), labelled=False),
        Stream((side - 0.2, -side + 0.2), 0.0, ("lamp_post",), 0.35, ("front",), labelled=False),
        Stream((walk + 0.5, -walk - 0.5), 0.0, ("bin",), 0.15 * (town.sidewalk > 0), ("front",),
               labelled=False),
        Stream((side + 4.0, -side - 4.0), 0.0, ("billboard",), 0.06, ("front",), labelled=False),
    )


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def _jitter(rng: np.random.Generator, c: tuple[int, int, int],
            amount: int = 18) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, size=3)
    return (int(np.clip(c[0] + d[0], 0, 255)), int(np.clip(c[1] + d[1], 0, 255)),
            int(np.clip(c[2] + d[2], 0, 255)))


def make_look(rng: np.random.Generator, town: Town, kind: str) -> Look:
    """Draw an appearance for a new actor of ``kind`` in ``town``."""
    vp, cp = town.vehicle_palette, town.clothing_palette
    pick = lambda p: p[int(rng.integers(len(p)))]  # noqa: E731
    if kind in ("pedestrian", "bicycle", "motorcycle"):
        body, second = _jitter(rng, pick(cp)), _jitter(rng, pick(cp + vp))
    elif kind == "traffic_light":
        body = pick(((30, 30, 30), (20, 160, 200), (40, 60, 40)))
        second = body
    elif kind == "tree":
        body, second = _jitter(rng, (40, 110, 50), 30), (30, 50, 80)
    elif kind in ("bin", "billboard"):
        body, second = _jitter(rng, pick(vp + cp), 40), _jitter(rng, pick(cp), 40)
    else:
        body, second = _jitter(rng, pick(vp)), _jitter(rng, pick((*vp, (200, 200, 200))))
    return Look(body=body, second=second, skin=SKIN[int(rng.integers(len(SKIN)))],
                variant=float(rng.random()), state=0)


@dataclass(frozen=True)
class _Spawn:
    kind: str
    s0: float
    x: float
    pose: str
    look: Look
    phase: float  # de-synchronises traffic lights and strolls


@lru_cache(maxsize=8192)
def _cell(seed: int, town_name: str, stream_id: int, cell: int) -> tuple[_Spawn, ...]:
    town = TOWNS[town_name]
    stream = _streams(town)[stream_id]
    weights = np.array([town.mix.get(k, 1.0) for k in stream.kinds], dtype=np.float64)
    lam = town.busyness * stream.rate * float(weights.sum()) if stream.labelled else stream.rate
    rng = _rng(seed, _town_id(town_name), stream_id, cell & 0xFFFFFFFF, cell >> 32 & 0xFFFF)
    n = int(rng.poisson(lam))
    if n == 0 or weights.sum() == 0:
        return ()
    p = weights / weights.sum()
    out = []
    for _ in range(n):
        kind = stream.kinds[int(rng.choice(len(p), p=p))]
        out.append(_Spawn(
            kind=kind,
            s0=(cell + float(rng.random())) * CELL_M,
            x=stream.lateral[int(rng.integers(len(stream.lateral)))] + float(rng.normal(0, 0.25)),
            pose=stream.poses[int(rng.integers(len(stream.poses)))],
            look=make_look(rng, town, kind),
            phase=float(rng.random()),
        ))
    return tuple(out)


@lru_cache(maxsize=1024)
def _junction(seed: int, town_name: str, k: int) -> tuple[_Spawn, ...]:
    """Signals at junction ``k`` and the actors crossing it (their ``x`` is where they start)."""
    town = TOWNS[town_name]
    rng = _rng(seed, _town_id(town_name), 1000, k & 0xFFFFFFFF)
    half = road_half_width(town)
    lights = town.mix.get("traffic_light", 0.0)
    signs = town.mix.get("stop_sign", 0.0)
    out: list[_Spawn] = []
    if lights + signs > 0:
        kind = "traffic_light" if rng.random() < lights / (lights + signs) else "stop_sign"
        kerb = half + town.sidewalk + 0.6
        for x, pose in ((kerb, "front"), (-kerb, "rear")):
            if rng.random() < 0.85:
                look = make_look(rng, town, kind)
                out.append(_Spawn(kind, k * town.intersection_every - 1.0, x, pose, look,
                                  float(rng.random())))
    walkers = [town.mix.get(c, 0.0) for c in WALKERS]
    riders = [town.mix.get(c, 0.0) for c in VEHICLES]
    for kinds, weights, offset, scale in ((WALKERS, walkers, -3.0, 0.35),
                                          (VEHICLES, riders, 6.0, 0.12)):
        total = sum(weights)
        if total <= 0:
            continue
        for _ in range(int(rng.poisson(town.busyness * total * scale))):
            kind = kinds[int(rng.choice(len(kinds), p=np.array(weights) / total))]
            s0 = k * town.intersection_every + offset + float(rng.normal(0, 1.0))
            out.append(_Spawn(kind, s0,
                              float(rng.uniform(-JUNCTION_CROSS_M, JUNCTION_CROSS_M)), "side",
                              make_look(rng, town, kind), float(rng.random())))
    return tuple(out)


def _town_id(name: str) -> int:
    return list(TOWNS).index(name)


@dataclass(frozen=True)
class Route:
    """Where the ego vehicle starts on its route: fixed by (seed, town)."""

    start: float
    speed: float

    def ego_s(self, t: int) -> float:
        return self.start + self.speed * t


def route_for(seed: int, town: Town) -> Route:
    rng = _rng(seed, _town_id(town.name), 7)
    return Route(start=float(rng.uniform(0.0, 1e5)), speed=town.ego_speed)


def actors_at(seed: int, town: Town, route: Route, t: int) -> list[Actor]:
    """Every actor and piece of clutter within ``[NEAR_M, FAR_M]`` at frame ``t``."""
    s_ego = route.ego_s(t)
    out: list[Actor] = []
    for sid, stream in enumerate(_streams(town)):
        shift = stream.speed * t  # the stream's coordinate moves with it
        lo = math.floor((s_ego + NEAR_M - shift) / CELL_M)
        hi = math.floor((s_ego + FAR_M - shift) / CELL_M)
        for cell in range(lo, hi + 1):
            for sp in _cell(seed, town.name, sid, cell):
                z = sp.s0 + shift - s_ego
                if NEAR_M <= z <= FAR_M:
                    x = sp.x
                    if sp.kind == "pedestrian" and sp.pose == "side":
                        x += 0.3 * math.sin(0.2 * t + 6.28 * sp.phase)
                    out.append(Actor(sp.kind, x, z, sp.pose, _with_state(sp, t), stream.labelled))
    if town.intersection_every > 0:
        every = town.intersection_every
        first, last = math.floor((s_ego + NEAR_M) / every), math.floor((s_ego + FAR_M) / every)
        for k in range(first, last + 2):
            for sp in _junction(seed, town.name, k):
                z = sp.s0 - s_ego
                if not NEAR_M <= z <= FAR_M:
                    continue
                x = sp.x
                if sp.pose == "side":  # crossing: moves across, wrapping at the span's ends
                    speed = 0.14 if sp.kind in WALKERS else 0.6
                    span = 2 * JUNCTION_CROSS_M
                    x = (sp.x + JUNCTION_CROSS_M + speed * t) % span - JUNCTION_CROSS_M
                out.append(Actor(sp.kind, x, z, sp.pose, _with_state(sp, t), True))
    return out


def _with_state(sp: _Spawn, t: int) -> Look:
    if sp.kind != "traffic_light":
        return sp.look
    # A 12 s cycle at 10 frames/s, offset per light: red, amber, green.
    phase = (t + int(sp.phase * 120)) % 120
    return replace(sp.look, state=0 if phase < 50 else 1 if phase < 62 else 2)


def buildings_at(seed: int, town: Town, route: Route, t: int) -> list[Building]:
    """Facades on both sides whose span overlaps the view at frame ``t``."""
    s_ego = route.ego_s(t)
    half = road_half_width(town) + town.sidewalk
    out = []
    for cell in range(math.floor(s_ego / CELL_M) - 2, math.floor((s_ego + FAR_M) / CELL_M) + 1):
        for b in _building_cell(seed, town.name, cell):
            x, s0, length, height, colour, floors = b
            z0, z1 = s0 - s_ego, s0 + length - s_ego
            if z1 > NEAR_M and z0 < FAR_M * 1.5:
                out.append(Building(math.copysign(half + abs(x), x), max(z0, 1.0), z1, height,
                                    colour, floors))
    return out


@lru_cache(maxsize=4096)
def _building_cell(seed: int, town_name: str, cell: int) -> tuple[tuple, ...]:  # type: ignore[type-arg]
    town = TOWNS[town_name]
    rng = _rng(seed, _town_id(town_name), 2000, cell & 0xFFFFFFFF)
    out = []
    for side in (1.0, -1.0):
        if rng.random() < town.buildings_per_10m:
            height = float(rng.uniform(*town.building_height))
            palette = town.building_palette
            colour = _jitter(rng, palette[int(rng.integers(len(palette)))])
            out.append((side * float(rng.uniform(1.0, 4.0)), (cell + float(rng.random())) * CELL_M,
                        float(rng.uniform(6.0, 14.0)), height, colour, max(1, int(height / 3.5))))
    return tuple(out)
