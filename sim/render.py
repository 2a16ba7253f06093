"""Pixels and ground truth for one frame of one camera.

``render_frame(seed, town, weather, index, camera)`` is a pure function of its arguments: the
same call gives the same image and boxes on any machine. A ``Renderer`` caches what does not
change between frames (sky, road, rain and noise layers), which is what makes several hundred
frames per second possible on one core.

The camera is a pinhole at ``camera.mount_height`` metres looking along the road; a point
``x`` metres right of the camera and ``z`` metres ahead on the ground lands at column
``cx + f x / z`` and row ``horizon + f h / z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sim.actors import CLUTTER, MOUNT, SIZE, SPRITES, Paint
from sim.scene import (
    FAR_M,
    Actor,
    Building,
    actors_at,
    buildings_at,
    ego_lateral,
    road_half_width,
    route_for,
)
from sim.world import CLASS_ID, Town, Weather, get_town, get_weather

MIN_VISIBLE = 0.5  # a box is labelled only if at least half of it is unoccluded
MIN_IN_FRAME = 0.6  # ... and at least this much of it lies inside the image
OCCLUSION_GRID = 4  # the occlusion mask works at 1/4 resolution
FOG_VEIL_M = 8.0  # fog veils even the nearest things: count this much air before them


@dataclass(frozen=True)
class CameraConfig:
    """The camera sensor: resolution, field of view and mounting."""

    width: int = 320
    height: int = 240
    fov_deg: float = 90.0  # horizontal
    mount_height: float = 1.4  # metres above the road
    horizon: float = 0.42  # row of the horizon as a fraction of the height
    min_box_px: float = 10.0  # labelled boxes are at least this tall at 240 rows (scales)

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"camera resolution {self.width}x{self.height} is outside 16..4096")
        if not 10.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"camera field of view {self.fov_deg} degrees is outside 10..170")

    @property
    def focal(self) -> float:
        return (self.width / 2) / math.tan(math.radians(self.fov_deg) / 2)


@dataclass(frozen=True)
class RenderedFrame:
    """An image and its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    boxes: np.ndarray  # (N, 4) float32, pixel x0, y0, x1, y1
    labels: np.ndarray  # (N,) int64 class ids of sim.world.CLASSES
    ignored: np.ndarray  # (M, 4) float32: objects in view that are not labelled (too small,
    # mostly hidden or mostly outside the frame); evaluation neither counts nor penalises them


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return (int(a[0] * (1 - k) + b[0] * k), int(a[1] * (1 - k) + b[1] * k),
            int(a[2] * (1 - k) + b[2] * k))


class Renderer:
    """Renders frames of one (seed, town, weather, camera) drive."""

    def __init__(self, seed: int, town: Town, weather: Weather, camera: CameraConfig) -> None:
        self.seed, self.town, self.weather, self.camera = seed, town, weather, camera
        self.route = route_for(seed, town)
        self.f = camera.focal
        self.cx = camera.width / 2
        self.hy = camera.height * camera.horizon
        self.ego_x = ego_lateral(town)
        self._light = tuple(weather.ambient * g for g in weather.tint)
        self._base = self._background()
        self._rain = self._rain_layers() if weather.rain > 0 else None
        self._glare = self._glare_layer() if weather.glare > 0 else None
        self._noise = self._noise_layers()

    # --- per-distance appearance --------------------------------------------------------

    def paint(self, z: float) -> Paint:
        w = self.weather
        light = self._light
        if w.night:  # our own headlights light what is close ahead
            boost = 0.55 * math.exp(-z / 12.0)
            light = tuple(min(1.2, c + boost) for c in light)
        fog = 1.0 - math.exp(-w.fog_density * (z + FOG_VEIL_M))
        return Paint(light=light, fog=fog, fog_colour=w.fog_colour, night=w.night)  # type: ignore[arg-type]

    def project(self, x: float, z: float, height: float = 0.0) -> tuple[float, float]:
        """Pixel (column, row) of the point ``height`` metres above the road at (x, z)."""
        return (self.cx + self.f * (x - self.ego_x) / z,
                self.hy + self.f * (self.camera.mount_height - height) / z)

    # --- cached layers ------------------------------------------------------------------

    def _background(self) -> np.ndarray:
        cam, w, t = self.camera, self.weather, self.town
        img = np.zeros((cam.height, cam.width, 3), np.uint8)
        hy = int(self.hy)
        for row in range(hy + 1):  # sky down to and including the horizon row
            img[row] = _mix(w.sky_top, w.sky_horizon, min(1.0, row / max(1, hy)))
        self._skyline(img)
        half = road_half_width(t)
        road = t.road
        if w.wetness > 0:  # wet asphalt is darker and mirrors the sky
            road = _mix(_mix(road, (20, 20, 20), 0.35 * w.wetness), w.sky_horizon, 0.2 * w.wetness)
        for row in range(hy + 1, cam.height):
            z = self.f * cam.mount_height / (row - self.hy)
            p = self.paint(z)
            img[row] = p.surface(t.ground)
            spans = [(-half - t.sidewalk, half + t.sidewalk, _mix(t.ground, (200, 200, 200), 0.25)),
                     (-half, half, road)] if t.sidewalk else [(-half, half, road)]
            for x0, x1, colour in spans:
                u0 = int(max(0, self.cx + self.f * (x0 - self.ego_x) / z))
                u1 = int(min(cam.width, self.cx + self.f * (x1 - self.ego_x) / z + 1))
                if u1 > u0:
                    img[row, u0:u1] = p.surface(colour)
            for xe in (-half + 0.15, half - 0.15):  # solid edge lines
                u = self.cx + self.f * (xe - self.ego_x) / z
                lw = max(1, int(self.f * 0.12 / z))
                if 0 <= u < cam.width:
                    img[row, int(u): int(u) + lw] = p.surface((215, 215, 215))
        return img

    def _skyline(self, img: np.ndarray) -> None:
        cam, w, t = self.camera, self.weather, self.town
        rng = np.random.default_rng(list(t.name.encode()))  # the skyline is the town's own
        hy = int(self.hy)
        base = _mix(t.building_palette[0], (40, 40, 40), 0.5) if t.skyline in ("city", "towers") \
            else _mix(t.ground, (60, 60, 60), 0.4)
        colour = _mix(_mix(base, w.fog_colour, 0.55), w.sky_horizon, 0.3)
        colour = tuple(int(c * min(1.0, w.ambient + 0.2)) for c in colour)  # type: ignore[assignment]
        x = 0
        while x < cam.width:
            if t.skyline in ("city", "towers"):
                bw = int(rng.integers(8, 30)) * cam.width // 320
                top = 0.25 if t.skyline == "towers" else 0.1
                bh = int(rng.uniform(0.03, top) * cam.height)
                cv2.rectangle(img, (x, hy - bh), (x + bw, hy), colour, -1)
                x += bw + int(rng.integers(0, 4))
            else:
                bw = int(rng.integers(30, 90)) * cam.width // 320
                peak = 0.14 if t.skyline == "mountains" else 0.05
                bh = int(rng.uniform(0.02, peak) * cam.height)
                pts = np.array([(x - bw // 2, hy), (x + bw // 2, hy - bh), (x + 3 * bw // 2, hy)],
                               np.int32)
                cv2.fillConvexPoly(img, pts, colour)
                x += bw
        if w.night:  # lit windows in the distance
            for _ in range(cam.width // 6 if t.skyline in ("city", "towers") else 0):
                u = int(rng.integers(0, cam.width))
                v = hy - int(rng.integers(1, int(0.1 * cam.height)))
                cv2.rectangle(img, (u, v), (u + 1, v), (90, 200, 240), -1)

    def _rain_layers(self) -> list[np.ndarray]:
        cam, w = self.camera, self.weather
        rng = np.random.default_rng([self.seed, 31])
        layers = []
        for _ in range(4):
            layer = np.zeros((cam.height, cam.width, 3), np.uint8)
            n = int(w.rain * cam.width * cam.height / 300)
            xs = rng.integers(0, cam.width, n)
            ys = rng.integers(0, cam.height, n)
            ls = rng.integers(6, 18, n) * cam.height // 240
            for x, y, length in zip(xs, ys, ls, strict=True):
                v = int(rng.integers(35, 80))
                end = (int(x - length // 4), int(y + length))
                cv2.line(layer, (int(x), int(y)), end, (v, v, v), 1)
            layers.append(layer)
        return layers

    def _glare_layer(self) -> np.ndarray:
        cam, w = self.camera, self.weather
        yy, xx = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float32)
        sx, sy = 0.72 * cam.width, self.hy - 0.06 * cam.height
        d2 = ((xx - sx) ** 2 + (yy - sy) ** 2) / (0.22 * cam.width) ** 2
        streak = np.exp(-((yy - sy) ** 2) / (0.012 * cam.height) ** 2) * 0.4
        g = (np.exp(-d2) + streak) * 170 * w.glare
        warm = np.array([0.6, 0.85, 1.0], np.float32)
        return np.clip(g[..., None] * warm, 0, 255).astype(np.uint8)

    def _noise_layers(self) -> tuple[np.ndarray, np.ndarray]:
        cam = self.camera
        rng = np.random.default_rng([self.seed, 53])
        pad = 32
        n = rng.normal(0.0, self.weather.noise, (cam.height + pad, cam.width + pad, 3))
        return (np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8))

    # --- one frame ------------------------------------------------------------------------

    def render(self, index: int) -> RenderedFrame:
        """Render frame ``index`` of the drive."""
        if index < 0:
            raise ValueError(f"frame index {index} is negative")
        img = self._base.copy()
        self._draw_markings(img, index)
        for building in buildings_at(self.seed, self.town, self.route, index):
            self._draw_building(img, building)
        actors = sorted(actors_at(self.seed, self.town, self.route, index), key=lambda a: a.z)
        boxes = [self._box(a) for a in actors]
        visible = self._visibility(actors, boxes)
        for a, b in zip(reversed(actors), reversed(boxes), strict=True):  # far to near
            self._draw_actor(img, a, b)
        self._post(img, index)
        return self._ground_truth(img, actors, boxes, visible)

    def _box(self, a: Actor) -> tuple[float, float, float, float]:
        wm, hm, lm = SIZE[a.kind]
        width = lm if a.pose == "side" else wm
        base = MOUNT.get(a.kind, 0.0)
        u, v_bottom = self.project(a.x, a.z, base)
        _, v_top = self.project(a.x, a.z, base + hm)
        half = self.f * width / a.z / 2
        return (u - half, v_top, u + half, v_bottom)

    def _visibility(self, actors: list[Actor],
                    boxes: list[tuple[float, float, float, float]]) -> list[float]:
        """Unoccluded fraction of each box, nearest first, on a coarse mask."""
        g = OCCLUSION_GRID
        cam = self.camera
        mask = np.zeros((cam.height // g + 1, cam.width // g + 1), np.bool_)
        out = []
        for a, (x0, y0, x1, y1) in zip(actors, boxes, strict=True):
            c0, r0 = max(0, int(x0 / g)), max(0, int(y0 / g))
            c1, r1 = min(mask.shape[1], int(x1 / g) + 1), min(mask.shape[0], int(y1 / g) + 1)
            if c1 <= c0 or r1 <= r0:
                out.append(0.0)
                continue
            region = mask[r0:r1, c0:c1]
            out.append(1.0 - float(region.mean()))
            # Thin things (people, poles, trees' trunks) hide only their middle.
            solid = 0.9 if a.kind in ("car", "truck", "bus", "billboard") else 0.45
            pad = int((c1 - c0) * (1 - solid) / 2)
            mask[r0:r1, c0 + pad : max(c0 + pad + 1, c1 - pad)] = True
        return out

    def _draw_markings(self, img: np.ndarray, t: int) -> None:
        town = self.town
        s_ego = self.route.ego_s(t)
        p0 = self.paint(10.0)
        white, yellow = p0.surface((220, 220, 220)), p0.surface((40, 190, 230))
        lines = [(0.0, yellow)] + [(i * town.lane_width * sgn, white)
                                   for i in range(1, town.lanes_each_way) for sgn in (1, -1)]
        period, dash = 9.0, 3.0
        first = math.ceil((s_ego + 2.0) / period) * period
        for k in range(int(40.0 / period) + 1):
            z0 = first + k * period - s_ego
            z1 = z0 + dash
            for x, colour in lines:
                pts = [self.project(x - 0.08, z0), self.project(x + 0.08, z0),
                       self.project(x + 0.08, z1), self.project(x - 0.08, z1)]
                cv2.fillConvexPoly(img, np.array(pts, np.int32), colour)
        if town.intersection_every > 0 and town.sidewalk > 0:  # zebra crossings
            every = town.intersection_every
            k = math.ceil((s_ego + 3.0) / every)
            z = k * every - 3.0 - s_ego
            if z < 40.0:
                half = road_half_width(town)
                c = self.paint(z).surface((225, 225, 225))
                for i in range(int(2 * half / 1.0)):
                    x = -half + i * 1.0 + 0.2
                    pts = [self.project(x, z - 1.5), self.project(x + 0.5, z - 1.5),
                           self.project(x + 0.5, z + 1.5), self.project(x, z + 1.5)]
                    cv2.fillConvexPoly(img, np.array(pts, np.int32), c)

    def _draw_building(self, img: np.ndarray, b: Building) -> None:
        far = self.paint(b.z1)
        near = self.paint(b.z0)
        colour = _mix(near.surface(b.colour), far.surface(b.colour), 0.5)
        pts = [self.project(b.x, b.z0), self.project(b.x, b.z1),
               self.project(b.x, b.z1, b.height), self.project(b.x, b.z0, b.height)]
        cv2.fillConvexPoly(img, np.array(pts, np.int32), colour)
        lit = self.weather.night
        win = far.lamp((90, 200, 240), True) if lit else far.surface((70, 60, 50))
        span = b.z1 - b.z0
        for floor in range(min(b.floors, 6)):
            h0 = 1.2 + floor * 3.5
            for i in range(3):
                za = b.z0 + span * (0.1 + 0.3 * i)
                zb = za + span * 0.15
                if za < 1.5:
                    continue
                q = [self.project(b.x, za, h0), self.project(b.x, zb, h0),
                     self.project(b.x, zb, h0 + 1.5), self.project(b.x, za, h0 + 1.5)]
                cv2.fillConvexPoly(img, np.array(q, np.int32), win)

    def _draw_actor(self, img: np.ndarray, a: Actor, b: tuple[float, float, float, float]) -> None:
        paint = self.paint(a.z)
        if a.kind in MOUNT:  # the pole of a signal, down to the road
            u = (b[0] + b[2]) / 2
            _, ground = self.project(a.x, a.z)
            pw = max(1.0, self.f * 0.1 / a.z)
            cv2.rectangle(img, (int(u - pw / 2), int(b[3])), (int(u + pw / 2), int(ground)),
                          paint.surface((90, 90, 90)), -1)
        if a.labelled:
            SPRITES[a.kind](img, b, a.pose, a.look, paint)
        else:
            CLUTTER[a.kind](img, b, a.look, paint)

    def _post(self, img: np.ndarray, index: int) -> None:
        if self._rain is not None:
            cv2.add(img, self._rain[index % len(self._rain)], dst=img)
        if self._glare is not None:
            cv2.add(img, self._glare, dst=img)
        pos, neg = self._noise
        rng = np.random.default_rng([self.seed, index, 97])
        dy, dx = (int(v) for v in rng.integers(0, 32, 2))
        h, w = self.camera.height, self.camera.width
        cv2.add(img, pos[dy : dy + h, dx : dx + w], dst=img)
        cv2.subtract(img, neg[31 - dy : 31 - dy + h, 31 - dx : 31 - dx + w], dst=img)

    def _ground_truth(self, img: np.ndarray, actors: list[Actor],
                      boxes: list[tuple[float, float, float, float]],
                      visible: list[float]) -> RenderedFrame:
        cam = self.camera
        min_h = cam.min_box_px * cam.height / 240
        out_boxes, out_labels, ignored = [], [], []
        for a, (x0, y0, x1, y1), vis in zip(actors, boxes, visible, strict=True):
            if not a.labelled or a.z > FAR_M:
                continue
            cx0, cy0 = max(0.0, x0), max(0.0, y0)
            cx1, cy1 = min(float(cam.width), x1), min(float(cam.height), y1)
            if cx1 <= cx0 or cy1 <= cy0 or vis <= 0.0:
                continue  # not in view at all
            if (vis < MIN_VISIBLE or (y1 - y0) < min_h or (x1 - x0) < 2
                    or (cx1 - cx0) * (cy1 - cy0) < MIN_IN_FRAME * (x1 - x0) * (y1 - y0)):
                ignored.append((cx0, cy0, cx1, cy1))
                continue
            out_boxes.append((cx0, cy0, cx1, cy1))
            out_labels.append(CLASS_ID[a.kind])
        return RenderedFrame(
            image=img,
            boxes=np.array(out_boxes, np.float32).reshape(-1, 4),
            labels=np.array(out_labels, np.int64),
            ignored=np.array(ignored, np.float32).reshape(-1, 4),
        )


@lru_cache(maxsize=64)
def renderer_for(seed: int, town: str, weather: str, camera: CameraConfig) -> Renderer:
    """A cached renderer; raises ``UnknownTownError``/``UnknownWeatherError`` on bad names."""
    return Renderer(seed, get_town(town), get_weather(weather), camera)


def render_frame(seed: int, town: str, weather: str, index: int,
                 camera: CameraConfig = CameraConfig()) -> RenderedFrame:
    """Frame ``index`` of the drive fixed by (seed, town, weather, camera)."""
    return renderer_for(seed, town, weather, camera).render(index)
