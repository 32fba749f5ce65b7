"""Default torch intra-op thread count: never more threads than idle physical cores.

torch's own default is every logical CPU. On a machine shared with other jobs its OpenMP
workers spin against them (and hyper-threads share one core's units): on a busy 2-core box one
thread ran model passes about 10x faster than two. The default here is the number of physical
cores this process may use (CPU affinity and a cgroup CPU quota count), less the 1-minute load
average, rounded down, at least 1. An explicit ``--threads`` always wins.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def choose_threads(cores: int, load: float) -> int:
    """Threads for ``cores`` usable physical cores under a 1-minute ``load`` average."""
    return max(1, min(cores, math.floor(cores - max(load, 0.0))))


def _cgroup_cpus() -> float | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``), None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _physical_per_logical() -> float:
    """Physical cores per logical CPU of the machine (1.0 without hyper-threading or if unknown)."""
    try:
        import psutil
        physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
        if physical and logical:
            return physical / logical
    except ImportError:
        pass
    try:  # Linux without psutil: distinct (package, core) pairs in /proc/cpuinfo
        cores, logical, package = set(), 0, "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor":
                logical += 1
            elif key == "physical id":
                package = value
            elif key == "core id":
                cores.add((package, value))
        if cores and logical:
            return len(cores) / logical
    except OSError:
        pass
    return 1.0


def usable_cores() -> int:
    """Physical cores this process may run on."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = max(1, round(logical * _physical_per_logical()))
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def default_threads() -> int:
    """The default intra-op thread count for this machine now (see the module docstring)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return choose_threads(usable_cores(), load)


def apply(threads: int | None = None) -> str:
    """Set torch's intra-op threads (``threads`` or :func:`default_threads`); return a header line."""
    import torch

    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, not {threads}")
    n = threads if threads is not None else default_threads()
    torch.set_num_threads(n)
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "unknown"
    how = "set by --threads" if threads is not None else "default: idle physical cores"
    return f"{n} torch thread{'s' if n != 1 else ''} ({how}; {usable_cores()} physical cores, load {load})"
