"""Sprites: how each actor class and each piece of clutter is drawn into its box.

Every function draws inside the pixel box ``(x0, y0, x1, y1)`` with OpenCV primitives, so the
cost is a handful of microseconds per actor. Shapes carry the class: proportions, wheels,
windows, heads and lamps; colours vary per actor and per town so that colour alone never
gives the class away. ``Paint`` turns a surface colour into what the camera sees at the
actor's distance under the current weather.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sim.world import BGR

Img = np.ndarray

# Colours that every town shares.
GLASS: BGR = (60, 45, 35)
TYRE: BGR = (25, 25, 25)
SKIN: tuple[BGR, ...] = ((150, 180, 230), (110, 140, 190), (70, 95, 140), (45, 60, 95))
RED_LAMP: BGR = (40, 40, 250)
WHITE_LAMP: BGR = (235, 250, 255)
AMBER_LAMP: BGR = (40, 190, 255)
GREEN_LAMP: BGR = (140, 250, 60)


@dataclass(frozen=True)
class Paint:
    """Turns surface and lamp colours into camera colours at one distance.

    ``light`` is the weather's ambient gain per channel, ``fog`` the blend factor towards
    ``fog_colour`` at this distance; lamps ignore ambient light but not fog.
    """

    light: tuple[float, float, float]
    fog: float
    fog_colour: BGR
    night: bool

    def surface(self, c: BGR) -> BGR:
        k = 1.0 - self.fog
        return (
            int(min(255.0, c[0] * self.light[0]) * k + self.fog_colour[0] * self.fog),
            int(min(255.0, c[1] * self.light[1]) * k + self.fog_colour[1] * self.fog),
            int(min(255.0, c[2] * self.light[2]) * k + self.fog_colour[2] * self.fog),
        )

    def lamp(self, c: BGR, lit: bool) -> BGR:
        """A lamp: bright when lit, otherwise a dim surface of the same hue."""
        if not lit:
            return self.surface((c[0] // 2, c[1] // 2, c[2] // 2))
        k = 1.0 - self.fog
        return (
            int(c[0] * k + self.fog_colour[0] * self.fog),
            int(c[1] * k + self.fog_colour[1] * self.fog),
            int(c[2] * k + self.fog_colour[2] * self.fog),
        )


@dataclass(frozen=True)
class Look:
    """Per-actor appearance, fixed when the actor is spawned."""

    body: BGR  # paint, jacket or housing colour
    second: BGR  # trousers, trailer, helmet...
    skin: BGR
    variant: float  # 0..1, proportions jitter
    state: int  # traffic light phase 0 red, 1 amber, 2 green


def _p(x: float, y: float) -> tuple[int, int]:
    return (int(x), int(y))


def _rect(img: Img, x0: float, y0: float, x1: float, y1: float, c: BGR) -> None:
    cv2.rectangle(img, _p(x0, y0), _p(x1, y1), c, -1)


def _poly(img: Img, pts: list[tuple[float, float]], c: BGR) -> None:
    cv2.fillConvexPoly(img, np.array(pts, dtype=np.int32), c)


def _disc(img: Img, x: float, y: float, r: float, c: BGR) -> None:
    cv2.circle(img, _p(x, y), max(1, int(r)), c, -1)


def _glow(img: Img, x: float, y: float, r: float, c: BGR, paint: Paint) -> None:
    """A lit lamp: at night it blooms."""
    if paint.night:
        halo = (c[0] // 3, c[1] // 3, c[2] // 3)
        _disc(img, x, y, r * 2.5, halo)
    _disc(img, x, y, r, c)


def draw_car(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
             paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    body, glass, tyre = paint.surface(look.body), paint.surface(GLASS), paint.surface(TYRE)
    lit = paint.night
    if pose == "side":
        roof = 0.25 + 0.15 * look.variant  # sedans low, hatchbacks and SUVs taller
        _rect(img, x0, y0 + 0.4 * h, x1, y0 + 0.8 * h, body)
        _poly(img, [(x0 + 0.18 * w, y0 + 0.42 * h), (x0 + roof * w + 0.05 * w, y0 + 0.05 * h),
                    (x0 + 0.72 * w, y0 + 0.05 * h), (x0 + 0.86 * w, y0 + 0.42 * h)], body)
        _poly(img, [(x0 + 0.25 * w, y0 + 0.4 * h), (x0 + roof * w + 0.09 * w, y0 + 0.12 * h),
                    (x0 + 0.69 * w, y0 + 0.12 * h), (x0 + 0.79 * w, y0 + 0.4 * h)], glass)
        _disc(img, x0 + 0.2 * w, y0 + 0.8 * h, 0.2 * h, tyre)
        _disc(img, x0 + 0.8 * w, y0 + 0.8 * h, 0.2 * h, tyre)
        _rect(img, x1 - 0.04 * w, y0 + 0.48 * h, x1, y0 + 0.58 * h, paint.lamp(WHITE_LAMP, lit))
        return
    _rect(img, x0 + 0.04 * w, y0 + 0.8 * h, x0 + 0.24 * w, y1, tyre)
    _rect(img, x1 - 0.24 * w, y0 + 0.8 * h, x1 - 0.04 * w, y1, tyre)
    _rect(img, x0, y0 + 0.45 * h, x1, y0 + 0.86 * h, body)
    _poly(img, [(x0 + 0.16 * w, y0 + 0.05 * h), (x1 - 0.16 * w, y0 + 0.05 * h),
                (x1 - 0.05 * w, y0 + 0.46 * h), (x0 + 0.05 * w, y0 + 0.46 * h)], body)
    _poly(img, [(x0 + 0.22 * w, y0 + 0.12 * h), (x1 - 0.22 * w, y0 + 0.12 * h),
                (x1 - 0.12 * w, y0 + 0.42 * h), (x0 + 0.12 * w, y0 + 0.42 * h)], glass)
    lamp = paint.lamp(RED_LAMP if pose == "rear" else WHITE_LAMP, lit)
    for lx in (x0 + 0.12 * w, x1 - 0.12 * w):
        if lit:
            _glow(img, lx, y0 + 0.56 * h, max(1.0, 0.07 * w), lamp, paint)
        else:
            _rect(img, lx - 0.08 * w, y0 + 0.5 * h, lx + 0.08 * w, y0 + 0.62 * h, lamp)
    _rect(img, x0 + 0.38 * w, y0 + 0.66 * h, x1 - 0.38 * w, y0 + 0.77 * h,
          paint.surface((220, 220, 220)))


def draw_truck(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
               paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    cab, box, tyre = paint.surface(look.body), paint.surface(look.second), paint.surface(TYRE)
    glass = paint.surface(GLASS)
    lit = paint.night
    if pose == "side":
        cab_x = x1 - 0.24 * w
        _rect(img, x0, y0, cab_x - 0.02 * w, y0 + 0.8 * h, box)
        _rect(img, cab_x, y0 + 0.28 * h, x1, y0 + 0.85 * h, cab)
        _rect(img, cab_x + 0.05 * w, y0 + 0.34 * h, x1 - 0.03 * w, y0 + 0.55 * h, glass)
        for fx in (0.1, 0.22, 0.62, 0.88):
            _disc(img, x0 + fx * w, y0 + 0.86 * h, 0.12 * h, tyre)
        return
    if pose == "rear":
        _rect(img, x0, y0, x1, y0 + 0.86 * h, box)
        _rect(img, x0 + 0.49 * w, y0 + 0.03 * h, x0 + 0.51 * w, y0 + 0.84 * h,
              paint.surface((40, 40, 40)))
        _rect(img, x0 + 0.02 * w, y0 + 0.86 * h, x0 + 0.3 * w, y1, tyre)
        _rect(img, x1 - 0.3 * w, y0 + 0.86 * h, x1 - 0.02 * w, y1, tyre)
        lamp = paint.lamp(RED_LAMP, lit)
        _glow(img, x0 + 0.06 * w, y0 + 0.8 * h, max(1.0, 0.04 * w), lamp, paint)
        _glow(img, x1 - 0.06 * w, y0 + 0.8 * h, max(1.0, 0.04 * w), lamp, paint)
        return
    _rect(img, x0 + 0.1 * w, y0, x1 - 0.1 * w, y0 + 0.3 * h, box)  # trailer above the cab
    _rect(img, x0, y0 + 0.28 * h, x1, y0 + 0.9 * h, cab)
    _rect(img, x0 + 0.08 * w, y0 + 0.33 * h, x1 - 0.08 * w, y0 + 0.55 * h, glass)
    _rect(img, x0 + 0.25 * w, y0 + 0.62 * h, x1 - 0.25 * w, y0 + 0.82 * h,
          paint.surface((70, 70, 70)))
    _rect(img, x0 + 0.05 * w, y0 + 0.9 * h, x0 + 0.25 * w, y1, tyre)
    _rect(img, x1 - 0.25 * w, y0 + 0.9 * h, x1 - 0.05 * w, y1, tyre)
    lamp = paint.lamp(WHITE_LAMP, lit)
    _glow(img, x0 + 0.1 * w, y0 + 0.72 * h, max(1.0, 0.05 * w), lamp, paint)
    _glow(img, x1 - 0.1 * w, y0 + 0.72 * h, max(1.0, 0.05 * w), lamp, paint)


def draw_bus(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
             paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    body, glass, tyre = paint.surface(look.body), paint.surface(GLASS), paint.surface(TYRE)
    lit = paint.night
    sign = paint.lamp(AMBER_LAMP, True)  # destination signs are always lit
    if pose == "side":
        _rect(img, x0, y0, x1, y0 + 0.88 * h, body)
        n = 5 + int(3 * look.variant)
        pitch = 0.86 * w / n
        for i in range(n):
            wx = x0 + 0.07 * w + i * pitch
            _rect(img, wx, y0 + 0.15 * h, wx + 0.8 * pitch, y0 + 0.48 * h, glass)
        _rect(img, x1 - 0.12 * w, y0 + 0.15 * h, x1 - 0.06 * w, y0 + 0.85 * h, glass)  # door
        _rect(img, x0, y0 + 0.6 * h, x1, y0 + 0.66 * h, paint.surface(look.second))
        _disc(img, x0 + 0.18 * w, y0 + 0.88 * h, 0.12 * h, tyre)
        _disc(img, x0 + 0.82 * w, y0 + 0.88 * h, 0.12 * h, tyre)
        return
    _rect(img, x0, y0, x1, y0 + 0.92 * h, body)
    _rect(img, x0 + 0.06 * w, y0 + 0.92 * h, x0 + 0.24 * w, y1, tyre)
    _rect(img, x1 - 0.24 * w, y0 + 0.92 * h, x1 - 0.06 * w, y1, tyre)
    if pose == "front":
        _rect(img, x0 + 0.15 * w, y0 + 0.03 * h, x1 - 0.15 * w, y0 + 0.1 * h, sign)
        _rect(img, x0 + 0.05 * w, y0 + 0.13 * h, x1 - 0.05 * w, y0 + 0.55 * h, glass)
        lamp = paint.lamp(WHITE_LAMP, lit)
    else:
        _rect(img, x0 + 0.12 * w, y0 + 0.08 * h, x1 - 0.12 * w, y0 + 0.3 * h, glass)
        lamp = paint.lamp(RED_LAMP, lit)
    _rect(img, x0, y0 + 0.62 * h, x1, y0 + 0.68 * h, paint.surface(look.second))
    _glow(img, x0 + 0.1 * w, y0 + 0.8 * h, max(1.0, 0.05 * w), lamp, paint)
    _glow(img, x1 - 0.1 * w, y0 + 0.8 * h, max(1.0, 0.05 * w), lamp, paint)


def _rider(img: Img, cx: float, y0: float, w: float, h: float, look: Look, paint: Paint,
           helmet: bool) -> None:
    """Head and torso of a rider or walker, centred on ``cx``, standing from ``y0``."""
    head = paint.surface(look.second if helmet else look.skin)
    _rect(img, cx - 0.3 * w, y0 + 0.18 * h, cx + 0.3 * w, y0 + 0.55 * h, paint.surface(look.body))
    _disc(img, cx, y0 + 0.1 * h, max(1.0, 0.09 * h if helmet else 0.075 * h), head)


def draw_motorcycle(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
                    paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    tyre, frame = paint.surface(TYRE), paint.surface((50, 50, 55))
    lit = paint.night
    if pose == "side":
        r = 0.2 * h
        _disc(img, x0 + 0.2 * w, y1 - r, r, tyre)
        _disc(img, x1 - 0.2 * w, y1 - r, r, tyre)
        _poly(img, [(x0 + 0.25 * w, y1 - 1.6 * r), (x0 + 0.45 * w, y0 + 0.45 * h),
                    (x1 - 0.3 * w, y0 + 0.42 * h), (x1 - 0.2 * w, y1 - 1.5 * r)],
              paint.surface(look.second))
        _poly(img, [(x0 + 0.38 * w, y0 + 0.18 * h), (x0 + 0.58 * w, y0 + 0.16 * h),
                    (x0 + 0.62 * w, y0 + 0.5 * h), (x0 + 0.4 * w, y0 + 0.5 * h)],
              paint.surface(look.body))
        _disc(img, x0 + 0.5 * w, y0 + 0.1 * h, max(1.0, 0.09 * h), paint.surface(look.second))
        _glow(img, x1 - 0.12 * w, y0 + 0.5 * h, max(1.0, 0.04 * h),
              paint.lamp(WHITE_LAMP, lit), paint)
        return
    cx = (x0 + x1) / 2
    _rect(img, cx - 0.14 * w, y0 + 0.55 * h, cx + 0.14 * w, y1, tyre)
    _rect(img, x0, y0 + 0.44 * h, x1, y0 + 0.49 * h, frame)  # handlebar and mirrors
    _rider(img, cx, y0, w, h, look, paint, helmet=True)
    lamp = paint.lamp(RED_LAMP if pose == "rear" else WHITE_LAMP, lit)
    _glow(img, cx, y0 + 0.62 * h, max(1.0, 0.1 * w), lamp, paint)


def draw_bicycle(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
                 paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    tyre, frame = paint.surface(TYRE), paint.surface(look.second)
    skin = paint.surface(look.skin)
    t = max(1, int(0.025 * h))
    if pose == "side":
        r = 0.22 * h
        c1, c2 = _p(x0 + 0.22 * w, y1 - r), _p(x1 - 0.22 * w, y1 - r)
        cv2.circle(img, c1, max(1, int(r)), tyre, t)
        cv2.circle(img, c2, max(1, int(r)), tyre, t)
        seat = _p(x0 + 0.42 * w, y0 + 0.5 * h)
        bar = _p(x1 - 0.3 * w, y0 + 0.45 * h)
        crank = _p(x0 + 0.5 * w, y1 - r)
        for a, z in ((c1, seat), (seat, crank), (crank, c2), (c2, bar), (bar, seat), (c1, crank)):
            cv2.line(img, a, z, frame, t)
        _poly(img, [(x0 + 0.36 * w, y0 + 0.5 * h), (x0 + 0.42 * w, y0 + 0.17 * h),
                    (x0 + 0.56 * w, y0 + 0.17 * h), (x0 + 0.48 * w, y0 + 0.5 * h)],
              paint.surface(look.body))
        cv2.line(img, _p(x0 + 0.52 * w, y0 + 0.22 * h), bar, skin, t)
        _disc(img, x0 + 0.5 * w, y0 + 0.09 * h, max(1.0, 0.075 * h), skin)
        return
    cx = (x0 + x1) / 2
    _rect(img, cx - 0.05 * w, y0 + 0.55 * h, cx + 0.05 * w, y1, tyre)
    _rect(img, x0 + 0.05 * w, y0 + 0.46 * h, x1 - 0.05 * w, y0 + 0.49 * h, frame)
    _rect(img, cx - 0.2 * w, y0 + 0.55 * h, cx - 0.1 * w, y0 + 0.8 * h, paint.surface(look.second))
    _rect(img, cx + 0.1 * w, y0 + 0.55 * h, cx + 0.2 * w, y0 + 0.8 * h, paint.surface(look.second))
    _rider(img, cx, y0, w * 0.8, h, look, paint, helmet=look.variant > 0.5)


def draw_pedestrian(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
                    paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    shirt, legs = paint.surface(look.body), paint.surface(look.second)
    skin = paint.surface(look.skin)
    t = max(1, int(0.07 * h)) if pose == "side" else 1
    if pose == "side":
        stride = 0.25 * w * (0.5 + look.variant)
        hip = _p(cx, y0 + 0.55 * h)
        cv2.line(img, hip, _p(cx - stride, y1), legs, t)
        cv2.line(img, hip, _p(cx + stride, y1), legs, t)
        _rect(img, cx - 0.18 * w, y0 + 0.18 * h, cx + 0.18 * w, y0 + 0.57 * h, shirt)
        cv2.line(img, _p(cx, y0 + 0.22 * h), _p(cx + stride, y0 + 0.5 * h), skin, max(1, t // 2))
    else:
        _rect(img, cx - 0.26 * w, y0 + 0.55 * h, cx - 0.03 * w, y1, legs)
        _rect(img, cx + 0.03 * w, y0 + 0.55 * h, cx + 0.26 * w, y1, legs)
        _rect(img, cx - 0.32 * w, y0 + 0.18 * h, cx + 0.32 * w, y0 + 0.58 * h, shirt)
        _rect(img, x0, y0 + 0.2 * h, cx - 0.34 * w, y0 + 0.52 * h, skin)
        _rect(img, cx + 0.34 * w, y0 + 0.2 * h, x1, y0 + 0.52 * h, skin)
    _disc(img, cx, y0 + 0.09 * h, max(1.0, 0.08 * h), skin)


def draw_traffic_light(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
                       paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    _rect(img, x0, y0, x1, y1, paint.surface(look.body))
    cx = (x0 + x1) / 2
    for i, lamp in enumerate((RED_LAMP, AMBER_LAMP, GREEN_LAMP)):
        cy = y0 + (0.18 + 0.32 * i) * h
        if pose == "side":  # seen edge-on: the visor hides the lamps
            _rect(img, cx - 0.1 * w, cy - 0.1 * h, x1, cy + 0.02 * h, paint.surface((15, 15, 15)))
        else:
            _glow(img, cx, cy, max(1.0, 0.3 * w), paint.lamp(lamp, look.state == i), paint)


def draw_stop_sign(img: Img, b: tuple[float, float, float, float], pose: str, look: Look,
                   paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    if pose == "rear":  # the back of the sign is grey metal
        _octagon(img, b, paint.surface((150, 150, 150)))
        return
    _octagon(img, b, paint.surface((245, 245, 245)))
    _octagon(img, (x0 + 0.07 * w, y0 + 0.07 * h, x1 - 0.07 * w, y1 - 0.07 * h),
             paint.surface((30, 30, 200)))
    _rect(img, x0 + 0.2 * w, y0 + 0.43 * h, x1 - 0.2 * w, y0 + 0.57 * h,
          paint.surface((245, 245, 245)))


_OCT = [(0.3, 0.0), (0.7, 0.0), (1.0, 0.3), (1.0, 0.7),
        (0.7, 1.0), (0.3, 1.0), (0.0, 0.7), (0.0, 0.3)]


def _octagon(img: Img, b: tuple[float, float, float, float], c: BGR) -> None:
    x0, y0, x1, y1 = b
    _poly(img, [(x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)) for fx, fy in _OCT], c)


# --- unlabelled clutter: things a camera sees that are none of the classes ---------------

def draw_tree(img: Img, b: tuple[float, float, float, float], look: Look, paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    _rect(img, cx - 0.07 * w, y0 + 0.5 * h, cx + 0.07 * w, y1, paint.surface((30, 50, 80)))
    _disc(img, cx, y0 + 0.33 * h, 0.45 * w, paint.surface(look.body))


def draw_lamp_post(img: Img, b: tuple[float, float, float, float], look: Look,
                   paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w = x1 - x0
    cx = (x0 + x1) / 2
    _rect(img, cx - 0.08 * w, y0, cx + 0.08 * w, y1, paint.surface((80, 80, 80)))
    _rect(img, cx - 0.5 * w, y0, cx + 0.5 * w, y0 + 0.3 * w, paint.surface((60, 60, 60)))
    _glow(img, cx, y0 + 0.4 * w, max(1.0, 0.3 * w), paint.lamp((180, 230, 255), paint.night), paint)


def draw_bin(img: Img, b: tuple[float, float, float, float], look: Look, paint: Paint) -> None:
    x0, y0, x1, y1 = b
    _rect(img, x0, y0 + 0.1 * (y1 - y0), x1, y1, paint.surface(look.body))
    _rect(img, x0 - 0.05 * (x1 - x0), y0, x1 + 0.05 * (x1 - x0), y0 + 0.12 * (y1 - y0),
          paint.surface(look.second))


def draw_billboard(img: Img, b: tuple[float, float, float, float], look: Look,
                   paint: Paint) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    _rect(img, x0 + 0.45 * w, y0 + 0.5 * h, x0 + 0.55 * w, y1, paint.surface((70, 70, 70)))
    _rect(img, x0, y0, x1, y0 + 0.55 * h, paint.surface(look.body))
    _disc(img, x0 + 0.3 * w, y0 + 0.27 * h, 0.18 * h, paint.surface(look.second))


Sprite = Callable[[Img, tuple[float, float, float, float], str, Look, Paint], None]
ClutterSprite = Callable[[Img, tuple[float, float, float, float], Look, Paint], None]

SPRITES: dict[str, Sprite] = {
    "car": draw_car,
    "truck": draw_truck,
    "bus": draw_bus,
    "motorcycle": draw_motorcycle,
    "bicycle": draw_bicycle,
    "pedestrian": draw_pedestrian,
    "traffic_light": draw_traffic_light,
    "stop_sign": draw_stop_sign,
}

CLUTTER: dict[str, ClutterSprite] = {
    "tree": draw_tree,
    "lamp_post": draw_lamp_post,
    "bin": draw_bin,
    "billboard": draw_billboard,
}

# World size (width, height) in metres of each class seen from the front or rear, and its
# length seen from the side. Signals list the size of the head; their pole is drawn apart.
SIZE: dict[str, tuple[float, float, float]] = {
    "car": (1.8, 1.5, 4.4),
    "truck": (2.5, 3.6, 8.5),
    "bus": (2.6, 3.2, 11.0),
    "motorcycle": (0.8, 1.5, 2.1),
    "bicycle": (0.6, 1.7, 1.8),
    "pedestrian": (0.55, 1.75, 0.45),
    "traffic_light": (0.4, 1.1, 0.3),
    "stop_sign": (0.75, 0.75, 0.1),
    "tree": (3.0, 5.0, 3.0),
    "lamp_post": (0.6, 6.0, 0.6),
    "bin": (0.6, 1.0, 0.6),
    "billboard": (3.5, 4.5, 0.3),
}
# Height of the lower edge of a signal's head above the road.
MOUNT: dict[str, float] = {"traffic_light": 2.6, "stop_sign": 1.5}
