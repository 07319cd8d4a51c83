"""How big workers are: cores, memory, how many workers and threads, and the
options people write for them (``--nworkers auto``, ``--memory-limit 0.5``,
``--resources "GPU=2 MEM=10e9"``), with dask.distributed's rules.

Used by the command line, ``LocalCluster`` and the ``Worker``/``Nanny``
classes, so that ``memory_limit=0.5`` means the same everywhere.

Rules (dask.distributed's, unless said otherwise):

* workers and threads: ``nprocesses_nthreads(cores)`` splits the cores into
  about sqrt(cores) workers; ``--nthreads`` defaults to the cores divided
  among the workers (at least 1: dask gives a worker every core when the
  division rounds to 0);
* ``--nworkers -1`` means cores + 1 - 1 workers, ``-2`` one fewer...;
* a memory limit is bytes (``4GB``, ``512MiB``, an int), a fraction of this
  machine's memory (a number at most 1: ``0.5``), ``auto`` (this machine's
  memory shared by thread count), or 0/None for no limit; a limit above the
  machine's memory is lowered to it, with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from shoal.units import parse_bytes

logger = logging.getLogger("shoal.deploy")


def cpu_count() -> int:
    """Cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def system_memory() -> int:
    """Bytes of memory this machine gives us: the smallest of the total
    memory, a cgroup limit (containers) and ``RLIMIT_RSS``."""
    import psutil

    limit = int(psutil.virtual_memory().total)
    if sys.platform == "linux":
        for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.high",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                     "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes"):
            try:
                with open(path) as f:
                    value = int(f.read().strip())  # "max" (no limit) fails here
            except (OSError, ValueError):
                continue
            if 0 < value < limit:
                limit = value
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_RSS)[1]
        if 0 < hard < limit:
            limit = hard
    except (ImportError, OSError, AttributeError):  # pragma: no cover
        pass
    return limit


def nprocesses_nthreads(cores: int | None = None) -> tuple[int, int]:
    """The default split of ``cores`` into (workers, threads per worker):
    one thread per worker up to 4 cores, else the smallest factor of the
    core count at least its square root, as in dask."""
    n = cpu_count() if cores is None else cores
    if n <= 4:
        return n, 1
    processes = min(f for f in range(1, n + 1) if n % f == 0 and f * f >= n)
    return processes, n // processes


def parse_nworkers(value: Any, cores: int | None = None) -> tuple[int, int | None]:
    """``--nworkers``: an int (negative: cores + 1 + n) or ``"auto"``.
    Returns (workers, threads per worker if "auto" chose it, else None)."""
    n = cpu_count() if cores is None else cores
    if value is None:
        return 1, None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return nprocesses_nthreads(n)
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--nworkers must be a number of workers or 'auto', got {value!r}") from None
    if count < 0:
        count = n + 1 + count
    if count <= 0:
        raise ValueError(f"--nworkers {value} leaves no worker on {n} cores: at least one is needed")
    return count, None


def default_nthreads(nworkers: int, cores: int | None = None) -> int:
    """Threads per worker when not given: the cores shared among the workers."""
    n = cpu_count() if cores is None else cores
    return max(1, n // max(1, nworkers))


def parse_memory_limit(value: Any, nthreads: int = 1, total_cores: int | None = None,
                       total: int | None = None) -> int:
    """A worker's memory limit in bytes (0: none) from what people write:
    ``None``/``0`` (none), ``"auto"`` (this machine's memory times the
    worker's share of the cores), a fraction (``0.5``, ``"0.5"``: of the
    machine's memory), a size (``"4GB"``, ``4e9``, an int).  ``total``:
    the machine's memory (default: ``system_memory()``)."""
    if value is None or value is False:
        return 0
    if isinstance(value, bool):
        raise TypeError(f"memory_limit must be a size, a fraction or 'auto', got {value!r}")
    cores = cpu_count() if total_cores is None else total_cores
    machine = system_memory() if total is None else total
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return int(machine * min(1.0, nthreads / max(1, cores)))
        if text in ("", "none"):
            return 0
        try:
            value = float(text)
        except ValueError:
            try:
                limit = parse_bytes(value)
            except ValueError:
                raise ValueError(f"cannot understand the memory limit {value!r} (try '4GB', "
                                 "a fraction of the machine's memory such as 0.5, or 'auto')") from None
            return _capped(limit, machine, value)
    if not isinstance(value, (int, float)):
        raise TypeError(f"memory_limit must be a size, a fraction or 'auto', got {value!r}")
    if value < 0 or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"memory_limit must not be negative, got {value!r}")
    if value <= 1:  # a number at most 1 is a fraction, 1 and 0 included, as in dask
        return int(value * machine)
    return _capped(int(value), machine, value)


def _capped(limit: int, machine: int, asked: Any) -> int:
    if limit > machine:
        logger.warning("memory limit %r is more than this machine's %d bytes: using %d", asked,
                       machine, machine)
        return machine
    return limit


def parse_resources(text: Any) -> dict[str, float]:
    """``"GPU=2 MEM=10e9"`` (spaces or commas between) or a dict -> ``{"GPU": 2.0, ...}``."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    elif isinstance(text, str):
        items = []
        for part in text.replace(",", " ").split():
            name, sep, amount = part.partition("=")
            if not sep or not name:
                raise ValueError(f"resources look like 'GPU=2 MEM=10e9', not {part!r}")
            items.append((name, amount))
    else:
        raise TypeError(f"resources must be a dict or a string like 'GPU=2 MEM=10e9', got {text!r}")
    out: dict[str, float] = {}
    for name, amount in items:
        try:
            out[str(name)] = float(amount)
        except (TypeError, ValueError):
            raise ValueError(f"resource {name!r} needs a number, got {amount!r}") from None
    return out


def format_resources(resources: dict[str, float]) -> str:
    """The inverse of ``parse_resources`` (for a child's command line)."""
    return " ".join(f"{k}={v!r}" for k, v in resources.items())


def interface_address(interface: str) -> str:
    """The IPv4 address of a network interface (``"eth0"``), else its IPv6 one."""
    import socket

    import psutil

    addresses = psutil.net_if_addrs()
    if interface not in addresses:
        raise ValueError(f"no network interface {interface!r}; this machine has "
                         f"{sorted(addresses)}")
    for family in (socket.AF_INET, socket.AF_INET6):
        for a in addresses[interface]:
            if a.family == family:
                return str(a.address).split("%")[0]
    raise ValueError(f"network interface {interface!r} has no IP address")
