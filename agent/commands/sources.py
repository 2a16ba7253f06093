"""Camera sources as data for the commands: bounded reads, one rule for corrupt files.

The rule, the same for ``train``, ``export`` and ``infer``: corrupt or unreadable files in a
folder are skipped, the command finishes with the rest, prints one error line per source
naming the count, and exits with ``BAD_INPUT_FILE`` so automation notices.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from agent.camera.source import CameraError, open_source
from agent.exit_codes import ExitCode
from models.data import CropSet, crops_from_frames
from models.detect_data import FrameSet, frames_to_set


@dataclass(frozen=True)
class Collected:
    """Crops from some sources, and how many of their files were skipped as corrupt."""

    crops: CropSet
    frames: int
    skipped: dict[str, int]  # source -> corrupt or unreadable files skipped

    def report_skipped(self) -> int:
        return report_skipped(self.skipped)


@dataclass(frozen=True)
class CollectedFrames:
    """Whole labelled frames at a detector's size, and the files skipped as corrupt."""

    frames: FrameSet
    skipped: dict[str, int]

    def report_skipped(self) -> int:
        return report_skipped(self.skipped)


def report_skipped(skipped: dict[str, int]) -> int:
    """Print one line per source that skipped files; the exit code the rule asks for."""
    for name, n in skipped.items():
        print(f"swarmdrive: error: {name}: skipped {n} corrupt or unreadable file(s)",
              file=sys.stderr)
    return int(ExitCode.BAD_INPUT_FILE) if skipped else 0


def collect_crops(specs: Sequence[str], n_classes: int, size: int, max_frames: int,
                  what: str) -> Collected:
    """Every labelled box of at most ``max_frames`` frames of each source, as crops.

    An endless camera (a live device, ``sim:`` without ``n=``) stops at ``max_frames``.
    """
    sets, frames, skipped = [], 0, {}
    for spec in specs:
        with open_source(spec, n_classes) as src:
            sets.append(crops_from_frames(itertools.islice(src, max_frames), size))
            stats = src.statistics()
        print(f"{what}: {stats.frames} frame(s) from {spec}", file=sys.stderr, flush=True)
        frames += stats.frames
        if stats.skipped:
            skipped[spec] = stats.skipped
    data = CropSet.concat(sets)
    if len(data) == 0:
        raise CameraError(f"{', '.join(specs)}: no labelled boxes to {what} on")
    return Collected(data, frames, skipped)



def collect_frames(specs: Sequence[str], n_classes: int, size: tuple[int, int],
                   max_frames: int, what: str) -> CollectedFrames:
    """At most ``max_frames`` labelled frames of each source, resized to ``size`` (w, h)."""
    sets, skipped = [], {}
    for spec in specs:
        with open_source(spec, n_classes) as src:
            labelled = (f for f in itertools.islice(src, max_frames) if len(f.labels))
            sets.append(frames_to_set(labelled, *size))
            stats = src.statistics()
        print(f"{what}: {stats.frames} frame(s) from {spec}", file=sys.stderr, flush=True)
        if stats.skipped:
            skipped[spec] = stats.skipped
    data = FrameSet.concat(sets)
    if len(data) == 0:
        raise CameraError(f"{', '.join(specs)}: no labelled frames to {what} on")
    return CollectedFrames(data, skipped)
