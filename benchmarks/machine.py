"""The machine the benchmarks run on: idleness, CPU accounting, versions.

Standard library only (the runner imports this).  The machine is shared, so
the runner waits (bounded) for it to be idle before each child, and records
how busy it was.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
VERSIONED = ("shoal", "dask", "distributed", "numpy", "psutil", "msgspec", "cloudpickle",
             "tornado", "uvloop")


def _proc_stat() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    vals = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(vals)
    idle = vals[3] + vals[4]
    return total - idle, total


def busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (None off Linux)."""
    st = _proc_stat()
    return None if st is None else st[0] / CLK_TCK


def busy_percent(interval: float = 0.5) -> float:
    """System-wide CPU busy % over ``interval`` seconds (100 = every CPU busy)."""
    a = _proc_stat()
    if a is None:
        time.sleep(interval)
        return 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1)
    time.sleep(interval)
    b = _proc_stat()
    assert b is not None
    dt = b[1] - a[1]
    return 100.0 * (b[0] - a[0]) / dt if dt > 0 else 0.0


def wait_idle(max_wait: float, threshold: float) -> tuple[float, float]:
    """Wait up to ``max_wait`` s for the machine to be below ``threshold`` % busy.
    Returns (last busy %, seconds waited)."""
    t0 = time.monotonic()
    busy = busy_percent(0.5) if max_wait > 0 else float("nan")
    while busy > threshold and time.monotonic() - t0 < max_wait:
        busy = busy_percent(0.5)
    return round(busy, 1), round(time.monotonic() - t0, 1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1e6, 1)
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_state(root: str) -> dict[str, object]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "shoal_dirty": bool(git("status", "--porcelain", "--", "shoal"))}


def info(root: str) -> dict[str, object]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "mem_total_GB": _mem_total_gb(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "git": git_state(root),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("DASK_", "SHOAL_"))},
    }
