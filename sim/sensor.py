"""The simulator's camera sensor as a ``CameraSource``: a vehicle driving a route.

The simulator registers it under the ``sim:`` camera scheme (entry-point group
``swarmdrive.cameras``), so a vehicle names it like any camera:

    sim:TOWN/WEATHER[?seed=0&start=0&n=100&stride=1&split=train]

``*`` for the town or the weather drives every town or every preset, each domain on its own
route (seed ``seed * 1000 + i``, as ``sim.datasets`` does). Without ``n`` the drive never ends.
``split=test`` drives routes that no training drive uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from urllib.parse import parse_qsl

from agent.camera.source import CameraError, SourceStatistics
from models.frame import Frame
from sim.render import CameraConfig, renderer_for
from sim.world import TOWNS, WEATHERS, get_town, get_weather

TEST_SEED_OFFSET = 1_000_003  # test drives use seed + this: routes no training drive uses
OPTIONS = ("seed", "start", "n", "stride", "split")


class SyntheticCamera:
    """Frames ``start, start+stride, ...`` of the drive fixed by (seed, town, weather, camera).

    Town and weather names are checked when the camera is made, so a typo fails at once.
    ``n=None`` drives forever.
    """

    def __init__(self, town: str, weather: str, seed: int = 0, start: int = 0,
                 n: int | None = None, camera: CameraConfig = CameraConfig(),
                 stride: int = 1) -> None:
        self._renderer = renderer_for(seed, town, weather, camera)
        self.name = f"sim:{town}/{weather}?seed={seed}"
        self.start, self.n, self.stride = start, n, stride
        self._frames = 0

    def __iter__(self) -> Iterator[Frame]:
        for k in itertools.count() if self.n is None else range(self.n):
            i = self.start + k * self.stride
            f = self._renderer.render(i)
            self._frames += 1
            yield Frame(image=f.image, origin=f"{self.name}#{i}", boxes=f.boxes, labels=f.labels,
                        ignored=f.ignored)

    def close(self) -> None:
        """Nothing to release; here for the ``CameraSource`` interface."""

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(frames=self._frames, skipped=0)

    def __enter__(self) -> SyntheticCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DomainsCamera:
    """Several drives one after another: what ``sim:*/*`` names."""

    def __init__(self, name: str, cameras: list[SyntheticCamera]) -> None:
        self.name, self.cameras = name, cameras

    def __iter__(self) -> Iterator[Frame]:
        for cam in self.cameras:
            yield from cam

    def close(self) -> None:
        """Nothing to release; here for the ``CameraSource`` interface."""

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(frames=sum(c.statistics().frames for c in self.cameras),
                                skipped=0)

    def __enter__(self) -> DomainsCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _options(spec: str, query: str) -> dict[str, int]:
    try:
        pairs = parse_qsl(query, strict_parsing=bool(query))
    except ValueError:
        raise CameraError(f"camera {spec!r}: options must look like name=value&...") from None
    opts: dict[str, int] = {}
    for key, value in pairs:
        if key not in OPTIONS:
            raise CameraError(f"camera {spec!r}: unknown option {key!r} (known: "
                              f"{', '.join(OPTIONS)})")
        if key == "split":
            if value not in ("train", "test"):
                raise CameraError(f"camera {spec!r}: split must be train or test")
            opts[key] = int(value == "test")
            continue
        try:
            opts[key] = int(value)
        except ValueError:
            raise CameraError(f"camera {spec!r}: {key}={value!r} is not an integer") from None
        if (key in ("n", "stride") and opts[key] < 1) or (key == "start" and opts[key] < 0):
            raise CameraError(f"camera {spec!r}: {key}={value} is out of range")
    return opts


def open_camera(spec: str, n_classes: int) -> SyntheticCamera | DomainsCamera:
    """Open ``sim:TOWN/WEATHER[?options]`` (the ``sim:`` camera scheme)."""
    where, _, query = spec.removeprefix("sim:").partition("?")
    town, _, weather = where.partition("/")
    if not town or not weather:
        raise CameraError(f"camera {spec!r}: expected sim:TOWN/WEATHER (or * for every one)")
    opts = _options(spec, query)
    towns = list(TOWNS) if town == "*" else [get_town(town).name]
    weathers = list(WEATHERS) if weather == "*" else [get_weather(weather).name]
    seed = opts.get("seed", 0) + TEST_SEED_OFFSET * opts.get("split", 0)
    start, n, stride = opts.get("start", 0), opts.get("n"), opts.get("stride", 1)
    domains = list(itertools.product(towns, weathers))
    if len(domains) == 1:
        return SyntheticCamera(towns[0], weathers[0], seed, start, n, stride=stride)
    return DomainsCamera(spec, [SyntheticCamera(t, w, seed * 1000 + i, start, n, stride=stride)
                                for i, (t, w) in enumerate(domains)])
