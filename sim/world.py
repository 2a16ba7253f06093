"""The CARLA-style world: towns, weather presets and the actor classes.

Everything here is data. A town fixes the road layout style, the palette and how often each
actor class appears (a highway sees trucks, a downtown sees pedestrians and cyclists); a weather
preset fixes light, colour, fog, rain, glare and sensor noise. The renderer (``sim.render``)
turns a (seed, town, weather, frame index) into pixels and ground truth.

Colours are BGR tuples, as OpenCV draws them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from agent.exit_codes import ExitCode
from models.classes import CLASSES

BGR = tuple[int, int, int]

CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

VEHICLES = ("car", "truck", "bus", "motorcycle")
WALKERS = ("pedestrian", "bicycle")
SIGNALS = ("traffic_light", "stop_sign")


class UnknownTownError(ValueError):
    """Raised for a town name that is not in ``TOWNS``."""

    exit_code = ExitCode.BAD_VALUE


class UnknownWeatherError(ValueError):
    """Raised for a weather name that is not in ``WEATHERS``."""

    exit_code = ExitCode.BAD_VALUE


@dataclass(frozen=True)
class Town:
    """A town's layout style, palette and class mix."""

    name: str
    style: str  # one line for people: what driving here looks like
    lanes_each_way: int
    lane_width: float  # metres
    sidewalk: float  # metres of pavement beside the road; 0 means a grass verge
    ground: BGR  # verge or pavement beyond the road
    road: BGR
    skyline: str  # "hills", "mountains", "city" or "towers": the silhouette at the horizon
    building_palette: tuple[BGR, ...]
    building_height: tuple[float, float]  # metres
    buildings_per_10m: float  # per side of the road
    trees_per_10m: float  # per side of the road; trees are unlabelled clutter
    intersection_every: float  # metres between junctions (lights, stop signs, crossings)
    ego_speed: float  # metres travelled per frame (10 frames/s)
    busyness: float  # scales every actor density
    # Relative frequency of each class here. Zero means never seen in this town.
    mix: dict[str, float] = field(default_factory=dict)
    vehicle_palette: tuple[BGR, ...] = ()
    clothing_palette: tuple[BGR, ...] = ()


@dataclass(frozen=True)
class Weather:
    """A weather preset named like CARLA's."""

    name: str
    ambient: float  # 0..1 light on surfaces (1 = noon sun)
    tint: tuple[float, float, float]  # BGR gain of the light colour
    sky_top: BGR
    sky_horizon: BGR
    fog_density: float  # per metre; colour blends to fog_colour as 1 - exp(-d z)
    fog_colour: BGR
    rain: float  # 0..1 density of rain streaks
    wetness: float  # 0..1 darker, glossier road
    glare: float  # 0..1 low sun flare near the horizon
    noise: float  # sensor noise sigma in 8-bit levels
    night: bool  # lamps, headlights and tail-lights are what you see


def _bgr(hex_rgb: str) -> BGR:
    r, g, b = (int(hex_rgb[i : i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


def _palette(*hexes: str) -> tuple[BGR, ...]:
    return tuple(_bgr(h) for h in hexes)


_CLOTHES_DULL = _palette("3b3b3b", "4a5a7a", "6b4e3d", "2f4f4f", "7a7a7a", "1f2a44")
_CLOTHES_BRIGHT = _palette("d13b3b", "2e86de", "f6b93b", "38ada9", "e55039", "8e44ad", "f8f8f8")

TOWNS: dict[str, Town] = {
    t.name: t
    for t in (
        Town(
            name="Town01",
            style="small rural town: two-lane road, grass verges, low houses, few pedestrians",
            lanes_each_way=1,
            lane_width=3.5,
            sidewalk=0.0,
            ground=_bgr("5d8a3a"),
            road=_bgr("5a5a5a"),
            skyline="hills",
            building_palette=_palette("c9a26b", "b5651d", "e8d8b0", "a0522d"),
            building_height=(4.0, 8.0),
            buildings_per_10m=0.25,
            trees_per_10m=0.8,
            intersection_every=120.0,
            ego_speed=1.2,
            busyness=0.8,
            mix={"car": 6, "truck": 2, "bus": 0.2, "motorcycle": 0.6, "bicycle": 0.15,
                 "pedestrian": 0.2, "traffic_light": 0.3, "stop_sign": 1.2},
            vehicle_palette=_palette("b03a2e", "1f4e79", "f0f0f0", "2d2d2d", "7d8c2a", "c2a14d"),
            clothing_palette=_CLOTHES_DULL,
        ),
        Town(
            name="Town02",
            style="residential grid: narrow streets, sidewalks, brick houses, stop signs",
            lanes_each_way=1,
            lane_width=3.2,
            sidewalk=2.5,
            ground=_bgr("9a948a"),
            road=_bgr("4c4c50"),
            skyline="city",
            building_palette=_palette("8b3a2b", "a0522d", "6e3b2a", "d2b48c"),
            building_height=(6.0, 12.0),
            buildings_per_10m=0.9,
            trees_per_10m=0.4,
            intersection_every=60.0,
            ego_speed=0.9,
            busyness=1.0,
            mix={"car": 5, "truck": 0.3, "bus": 0.2, "motorcycle": 0.5, "bicycle": 1.5,
                 "pedestrian": 2.5, "traffic_light": 0.3, "stop_sign": 1.5},
            vehicle_palette=_palette("c0c0c0", "8b0000", "003366", "f5f5dc", "228b22", "000000"),
            clothing_palette=_CLOTHES_DULL + _CLOTHES_BRIGHT,
        ),
        Town(
            name="Town03",
            style="large city: four-lane avenues, roundabouts, traffic lights, buses",
            lanes_each_way=2,
            lane_width=3.5,
            sidewalk=3.0,
            ground=_bgr("a8a39a"),
            road=_bgr("505050"),
            skyline="towers",
            building_palette=_palette("7f8c8d", "95a5a6", "34495e", "bdc3c7", "5d6d7e"),
            building_height=(12.0, 40.0),
            buildings_per_10m=1.0,
            trees_per_10m=0.2,
            intersection_every=70.0,
            ego_speed=1.3,
            busyness=1.3,
            mix={"car": 5, "truck": 0.8, "bus": 1.5, "motorcycle": 1.0, "bicycle": 1.0,
                 "pedestrian": 2.0, "traffic_light": 1.5, "stop_sign": 0.2},
            vehicle_palette=_palette("f1c40f", "ecf0f1", "2c3e50", "c0392b", "7f8c8d", "16a085"),
            clothing_palette=_CLOTHES_BRIGHT,
        ),
        Town(
            name="Town04",
            style="mountain highway: multi-lane motorway, concrete barriers, heavy trucks",
            lanes_each_way=3,
            lane_width=3.7,
            sidewalk=0.0,
            ground=_bgr("8a8f5a"),
            road=_bgr("636363"),
            skyline="mountains",
            building_palette=_palette("9e9e9e",),
            building_height=(3.0, 5.0),
            buildings_per_10m=0.02,
            trees_per_10m=0.3,
            intersection_every=0.0,
            ego_speed=2.8,
            busyness=1.2,
            mix={"car": 5, "truck": 4, "bus": 0.8, "motorcycle": 1.0, "bicycle": 0.0,
                 "pedestrian": 0.02, "traffic_light": 0.0, "stop_sign": 0.0},
            vehicle_palette=_palette("ffffff", "e0e0e0", "1b1b1b", "3a5f8f", "8f3a3a", "d4a017"),
            clothing_palette=_CLOTHES_DULL,
        ),
        Town(
            name="Town05",
            style="urban grid: wide multi-lane streets, overpasses, parking, mixed traffic",
            lanes_each_way=2,
            lane_width=3.5,
            sidewalk=2.0,
            ground=_bgr("8c8c84"),
            road=_bgr("464646"),
            skyline="city",
            building_palette=_palette("c8b68c", "9b8f7a", "6f7f8f", "e0d6c0"),
            building_height=(8.0, 25.0),
            buildings_per_10m=0.7,
            trees_per_10m=0.3,
            intersection_every=90.0,
            ego_speed=1.6,
            busyness=1.1,
            mix={"car": 6, "truck": 1.5, "bus": 1.2, "motorcycle": 0.8, "bicycle": 0.5,
                 "pedestrian": 1.0, "traffic_light": 1.2, "stop_sign": 0.3},
            vehicle_palette=_palette("4b6584", "d1d8e0", "eb3b5a", "20bf6b", "0f0f0f", "a5b1c2"),
            clothing_palette=_CLOTHES_DULL + _CLOTHES_BRIGHT,
        ),
        Town(
            name="Town07",
            style="countryside: narrow lanes, farms, barns, tractors and few people",
            lanes_each_way=1,
            lane_width=3.0,
            sidewalk=0.0,
            ground=_bgr("a39a4a"),
            road=_bgr("6b665c"),
            skyline="hills",
            building_palette=_palette("8b1a1a", "d8c8a8", "5c4033"),
            building_height=(4.0, 9.0),
            buildings_per_10m=0.1,
            trees_per_10m=1.2,
            intersection_every=150.0,
            ego_speed=1.0,
            busyness=0.6,
            mix={"car": 4, "truck": 2.5, "bus": 0.1, "motorcycle": 0.8, "bicycle": 0.2,
                 "pedestrian": 0.15, "traffic_light": 0.05, "stop_sign": 1.5},
            vehicle_palette=_palette("2e7d32", "b71c1c", "f9a825", "5d4037", "eeeeee", "37474f"),
            clothing_palette=_CLOTHES_DULL,
        ),
        Town(
            name="Town10",
            style="downtown: dense towers, crosswalks full of pedestrians, cyclists, buses",
            lanes_each_way=1,
            lane_width=3.3,
            sidewalk=3.5,
            ground=_bgr("b0a999"),
            road=_bgr("3f3f44"),
            skyline="towers",
            building_palette=_palette("2c3e50", "8e44ad", "d35400", "bdc3c7", "1abc9c"),
            building_height=(20.0, 60.0),
            buildings_per_10m=1.2,
            trees_per_10m=0.3,
            intersection_every=45.0,
            ego_speed=0.7,
            busyness=1.5,
            mix={"car": 3, "truck": 0.3, "bus": 1.5, "motorcycle": 0.8, "bicycle": 2.5,
                 "pedestrian": 5.0, "traffic_light": 1.5, "stop_sign": 0.2},
            vehicle_palette=_palette("f7d000", "ffffff", "101010", "c62828", "1565c0", "9e9e9e"),
            clothing_palette=_CLOTHES_BRIGHT,
        ),
    )
}

WEATHERS: dict[str, Weather] = {
    w.name: w
    for w in (
        Weather("ClearNoon", 1.0, (1.0, 1.0, 1.0), _bgr("4a90e2"), _bgr("bcd9f5"),
                0.0015, _bgr("d0dce8"), 0.0, 0.0, 0.0, 2.0, False),
        Weather("CloudyNoon", 0.72, (1.05, 1.0, 0.95), _bgr("8a939c"), _bgr("c5cad0"),
                0.004, _bgr("b8bcc0"), 0.0, 0.0, 0.0, 3.0, False),
        Weather("WetNoon", 0.85, (1.0, 1.0, 1.0), _bgr("5d8fc7"), _bgr("b5cce0"),
                0.003, _bgr("c0ccd8"), 0.0, 0.8, 0.0, 3.0, False),
        Weather("HardRainNoon", 0.5, (1.08, 1.0, 0.92), _bgr("4f555c"), _bgr("7f868c"),
                0.02, _bgr("80868c"), 1.0, 1.0, 0.0, 6.0, False),
        Weather("ClearSunset", 0.75, (0.7, 0.9, 1.25), _bgr("3b4a8c"), _bgr("f5a04a"),
                0.004, _bgr("e0a070"), 0.0, 0.0, 1.0, 3.0, False),
        Weather("ClearNight", 0.18, (1.15, 0.95, 0.8), _bgr("05070f"), _bgr("1a2030"),
                0.006, _bgr("151820"), 0.0, 0.2, 0.0, 9.0, True),
        Weather("FoggyMorning", 0.65, (1.0, 1.0, 1.0), _bgr("b0b4b8"), _bgr("c8cacc"),
                0.06, _bgr("c4c6c8"), 0.0, 0.3, 0.0, 4.0, False),
    )
}


def _lookup(kind: str, name: str, table: dict, error: type[ValueError]):  # type: ignore[type-arg]
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, table, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise error(f"unknown {kind} {name!r}{hint}; known: {', '.join(table)}")


def get_town(name: str) -> Town:
    """Return the town called ``name`` or raise ``UnknownTownError`` listing the known ones."""
    town: Town = _lookup("town", name, TOWNS, UnknownTownError)
    return town


def get_weather(name: str) -> Weather:
    """Return the preset called ``name`` or raise ``UnknownWeatherError``."""
    weather: Weather = _lookup("weather", name, WEATHERS, UnknownWeatherError)
    return weather


def all_domains() -> list[tuple[str, str]]:
    """Every (town, weather) pair, in a fixed order: the fleet-wide test set spans these."""
    return [(t, w) for t in TOWNS for w in WEATHERS]
