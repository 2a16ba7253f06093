"""A fixed CPU budget per simulated vehicle, with Linux cgroups.

On the road every vehicle has its own cores; on one machine a fleet's processes share its
cores, so each vehicle gets less CPU the more vehicles there are, and anything that scales with
the fleet looks worse than it is. ``CpuBudget`` puts each vehicle's processes (its learner
and its server) in a cgroup of their own with a CPU quota of ``cores``: a vehicle then has the
same compute in a fleet of 8 as in a fleet of 16, as long as ``vehicles x cores`` fits the
machine. The chain node and the broker stay outside, as they would on the road.

Needs permission to create cgroups (root, or a delegated subtree) and the ``cpu`` controller on
cgroup v1 (``cpu.cfs_quota_us``) or v2 (``cpu.max``); ``CpuBudgetError`` says which is
missing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

PERIOD_US = 100_000


class CpuBudgetError(Exception):
    """This machine cannot give vehicles a CPU budget (no cgroup cpu controller, or no right
    to create groups in it)."""


def cpu_cgroup_root(mounts: str | None = None) -> tuple[Path, int]:
    """Where the cpu controller is mounted, and its cgroup version (1 or 2)."""
    if mounts is None:
        mounts = Path("/proc/mounts").read_text()
    v2: Path | None = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        where, kind, options = Path(parts[1]), parts[2], parts[3].split(",")
        if kind == "cgroup" and "cpu" in options:
            return where, 1
        if kind == "cgroup2" and v2 is None:
            v2 = where
    if v2 is not None:
        with contextlib.suppress(OSError):
            if "cpu" in (v2 / "cgroup.controllers").read_text().split():
                return v2, 2
    raise CpuBudgetError("no cgroup cpu controller is mounted (see /proc/mounts)")


class CpuBudget:
    """Per-vehicle cgroups under one parent, removed on exit; ``enter(i)`` runs in a child
    process before it execs (``subprocess.Popen(preexec_fn=...)``)."""

    def __init__(self, cores: float, root: Path | None = None, version: int | None = None
                 ) -> None:
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise CpuBudgetError(f"a vehicle's CPU budget of {cores} cores is outside 0.01.."
                                 f"{os.cpu_count()}")
        if root is None or version is None:
            root, version = cpu_cgroup_root()
        self.cores, self.version = cores, version
        self.parent = root / f"swarmdrive-{os.getpid()}"
        self._groups: dict[int, Path] = {}

    def __enter__(self) -> CpuBudget:
        try:
            self.parent.mkdir()
            if self.version == 2:
                (self.parent / "cgroup.subtree_control").write_text("+cpu")
        except OSError as e:
            raise CpuBudgetError(f"cannot create cgroup {self.parent}: {e.strerror}") from None
        return self

    def group(self, vehicle: int) -> Path:
        """Vehicle ``vehicle``'s cgroup, created with its quota on first use."""
        if vehicle not in self._groups:
            g = self.parent / f"vehicle-{vehicle}"
            g.mkdir(exist_ok=True)
            quota = int(self.cores * PERIOD_US)
            if self.version == 1:
                (g / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (g / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (g / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            self._groups[vehicle] = g
        return self._groups[vehicle]

    def entry(self, vehicle: int) -> Path:
        """The file a process writes its PID to, to join ``vehicle``'s group."""
        return self.group(vehicle) / "cgroup.procs"

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A group can be removed once its processes are gone; the fleet has stopped them.
        for g in [*self._groups.values(), self.parent]:
            with contextlib.suppress(OSError):
                g.rmdir()


def join(entry: Path) -> None:
    """Move the calling process into the cgroup whose ``cgroup.procs`` is ``entry``."""
    entry.write_text(str(os.getpid()))
