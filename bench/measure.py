"""The bench's measuring, one definition of each: the percentile of a sample, and
what /proc says about a process (CPU seconds, resident memory) and about the
whole machine (CPU seconds busy). Without /proc (not Linux), the readers find
nothing: None, or NaN for memory."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest of ``values`` that at least ``share`` of them are at
    or below, i.e. the value of rank ``ceil(share * n)`` (1-based) in sorted order.

    Always a value that was measured, never one between two: p50 of an even count
    is the lower of the middle two, and p99 of fewer than 100 values is the largest.
    Raises ValueError for no values.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    # Rounded first: 0.07 * 100 is 7.000000000000001, whose ceiling would be 8.
    rank = math.ceil(round(share * len(ordered), 9))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time the process has used so far; None when there is
    no such process."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the ")" that closes the command name: utime and stime are 12 and 13.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_by_process(pids: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds used so far, by name; 0 for a process that is not there."""
    return {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent on anything but idling and waiting
    for I/O since it booted, summed over its cores."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in first]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def rss_mib(pid: int | None) -> float:
    """The process's resident memory in MiB, to 0.1; NaN when there is none to read."""
    if pid is None:
        return float("nan")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")
