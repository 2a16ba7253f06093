"""Crop and frame sets drawn from the simulator: per-domain training data and the fleet-wide
test set.

A domain is a (town, weather) pair. Training drives and test drives use disjoint seeds, so
the test set is never a frame the model has seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.data import CropSet, crops_from_frames
from models.detect_data import FrameSet, frames_to_set
from sim.render import CameraConfig
from sim.sensor import TEST_SEED_OFFSET, SyntheticCamera
from sim.world import all_domains

FRAME_STRIDE = 5  # keep every 5th frame: neighbours are near-duplicates


def domain_crops(town: str, weather: str, seed: int, frames: int, size: int,
                 camera: CameraConfig = CameraConfig(), start: int = 0) -> CropSet:
    """Crops from ``frames`` frames (every ``FRAME_STRIDE``-th) of one drive."""
    cam = SyntheticCamera(town, weather, seed=seed, start=start, n=frames, camera=camera,
                          stride=FRAME_STRIDE)
    return crops_from_frames(cam, size)


def domains_crops(domains: Sequence[tuple[str, str]], seed: int, frames_per_domain: int,
                  size: int) -> CropSet:
    """Crops from several domains, each from its own drive."""
    return CropSet.concat(
        domain_crops(t, w, seed * 1000 + i, frames_per_domain, size)
        for i, (t, w) in enumerate(domains)
    )


def fleet_test_set(seed: int, frames_per_domain: int, size: int) -> CropSet:
    """The fleet-wide test set: every town under every weather."""
    return domains_crops(all_domains(), seed + TEST_SEED_OFFSET, frames_per_domain, size)


def domain_frames(town: str, weather: str, seed: int, frames: int, width: int, height: int,
                  start: int = 0) -> FrameSet:
    """Whole frames (every ``FRAME_STRIDE``-th) of one drive, at the detector's size."""
    cam = SyntheticCamera(town, weather, seed=seed, start=start, n=frames, stride=FRAME_STRIDE)
    return frames_to_set(cam, width, height)


def domains_frames(domains: Sequence[tuple[str, str]], seed: int, frames_per_domain: int,
                   width: int, height: int) -> FrameSet:
    """Frames from several domains, each from its own drive (the same drives as the crops)."""
    return FrameSet.concat(
        domain_frames(t, w, seed * 1000 + i, frames_per_domain, width, height)
        for i, (t, w) in enumerate(domains)
    )


def fleet_test_frames(seed: int, frames_per_domain: int, width: int, height: int) -> FrameSet:
    """The fleet-wide detection test set: every town under every weather."""
    return domains_frames(all_domains(), seed + TEST_SEED_OFFSET, frames_per_domain, width,
                          height)
