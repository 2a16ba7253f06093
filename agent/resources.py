"""This process's CPU time and resident memory, for status lines and telemetry (stdlib only)."""

from __future__ import annotations

import os
import resource


def rss_mb() -> float:
    """Resident set size now, in MiB (Linux: /proc/self/statm; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User plus system CPU seconds this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
