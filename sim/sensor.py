"""The simulator's camera sensor as a ``CameraSource``: a vehicle driving a route."""

from __future__ import annotations

from collections.abc import Iterator

from agent.camera.frame import Frame
from agent.camera.source import SourceStatistics
from sim.render import CameraConfig, renderer_for


class SyntheticCamera:
    """Frames ``start, start+1, ...`` of the drive fixed by (seed, town, weather, camera).

    Town and weather names are checked when the camera is made, so a typo fails at once.
    ``n=None`` drives forever.
    """

    def __init__(self, town: str, weather: str, seed: int = 0, start: int = 0,
                 n: int | None = None, camera: CameraConfig = CameraConfig()) -> None:
        self._renderer = renderer_for(seed, town, weather, camera)
        self.name = f"sim:{town}/{weather}?seed={seed}"
        self.start, self.n = start, n
        self._frames = 0

    def __iter__(self) -> Iterator[Frame]:
        i = self.start
        while self.n is None or i < self.start + self.n:
            f = self._renderer.render(i)
            self._frames += 1
            yield Frame(image=f.image, origin=f"{self.name}#{i}", boxes=f.boxes, labels=f.labels)
            i += 1

    def close(self) -> None:
        """Nothing to release; here for the ``CameraSource`` interface."""

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(frames=self._frames, skipped=0)

    def __enter__(self) -> SyntheticCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
