"""Vehicle profiles: each vehicle drives one town under its own weathers, as a real fleet does.

A profile fixes both skews of a real fleet: the label skew (a highway vehicle sees trucks, a
downtown one pedestrians) and the feature skew (a night-shift vehicle sees the dark).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.data import CropSet
from models.detect_data import FrameSet
from sim.datasets import domain_crops, domain_frames
from sim.world import TOWNS, WEATHERS


@dataclass(frozen=True)
class Profile:
    town: str
    weathers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.town}/{'+'.join(self.weathers)}"


def fleet_profiles(n: int) -> list[Profile]:
    """``n`` distinct profiles: towns in turn, two weathers each, shifted per vehicle."""
    towns, weathers = list(TOWNS), list(WEATHERS)
    out: list[Profile] = []
    for i in range(n):
        w1 = weathers[(2 * i) % len(weathers)]
        w2 = weathers[(2 * i + 1 + i // len(towns)) % len(weathers)]
        profile = Profile(towns[i % len(towns)], (w1, w2) if w1 != w2 else (w1,))
        if profile in out:
            raise ValueError(f"cannot make {n} distinct profiles")
        out.append(profile)
    return out


def vehicle_data(profile: Profile, seed: int, frames_per_weather: int, size: int) -> CropSet:
    """The vehicle's own labelled crops: its drives in its town under each of its weathers."""
    return CropSet.concat(
        domain_crops(profile.town, w, seed * 100 + k, frames_per_weather, size)
        for k, w in enumerate(profile.weathers)
    )


def vehicle_frames(profile: Profile, seed: int, frames_per_weather: int,
                   size: tuple[int, int]) -> FrameSet:
    """The same drives as ``vehicle_data``, as whole labelled frames for the detector."""
    return FrameSet.concat(
        domain_frames(profile.town, w, seed * 100 + k, frames_per_weather, *size)
        for k, w in enumerate(profile.weathers)
    )
