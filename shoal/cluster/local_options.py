"""``LocalCluster``'s keywords -> what to start: sizes, the scheduler's and
the workers' keywords, and the keywords of dask's that shoal refuses.

Every keyword of dask.distributed's ``LocalCluster`` is accepted and either
honoured, refused with ``NotImplementedError`` naming it, or (the few that
mean nothing in shoal) kept and documented in docs/usage.md; none is
silently dropped.  Pure functions of their arguments (and the machine's
size), tested directly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from shoal.deploy.keywords import check_protocol, refuse
from shoal.deploy.sizing import (
    cpu_count,
    interface_address,
    nprocesses_nthreads,
    parse_memory_limit,
)


def default_sizes(n_workers: int | None, threads_per_worker: int | None, processes: bool,
                  cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) with dask's defaults: about sqrt(cores)
    worker processes, or one worker with every core for threads; a given
    worker count shares the cores, rounding up (overcommit rather than
    undercommit)."""
    n = cpu_count() if cores is None else cores
    if n_workers is None and threads_per_worker is None:
        return nprocesses_nthreads(n) if processes else (1, n)
    if n_workers is None:
        assert threads_per_worker is not None
        return (max(1, n // threads_per_worker) if processes else 1), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, math.ceil(n / n_workers)) if n_workers else n
    return n_workers, threads_per_worker


@dataclass
class Plan:
    """What a LocalCluster starts, from its keywords."""

    processes: bool
    n_workers: int
    threads_per_worker: int
    host: str
    protocol: str  # "tcp", "tls" or "inproc"
    memory_limit: int
    log_level: str | None  # for the cluster's processes (silence_logs); None: leave as is
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    worker_kwargs: dict[str, Any] = field(default_factory=dict)


def _worker_class_processes(worker_class: Any, processes: bool | None) -> bool:
    """dask: processes defaults to True unless ``worker_class`` is Worker."""
    if worker_class is None:
        return True if processes is None else bool(processes)
    name = worker_class if isinstance(worker_class, str) else (
        f"{getattr(worker_class, '__module__', '')}.{getattr(worker_class, '__qualname__', '')}")
    short = name.rsplit(".", 1)[-1]
    if short not in ("Worker", "Nanny") or not name.startswith(("shoal", "distributed", "dask")):
        raise NotImplementedError(f"LocalCluster(worker_class={worker_class!r}): shoal starts "
                                  "shoal.Worker (processes=False) or shoal.Nanny (processes=True)")
    wants_processes = short == "Nanny"
    if processes is not None and bool(processes) != wants_processes:
        raise NotImplementedError(
            f"LocalCluster(worker_class={short}, processes={processes}): shoal runs Nanny workers "
            "as processes and Worker workers in this process")
    return wants_processes


def plan(
    *,
    n_workers: int | None,
    threads_per_worker: int | None,
    processes: bool | None,
    loop: Any,
    start: Any,
    host: str | None,
    ip: str | None,
    silence_logs: Any,
    worker_dashboard_address: str | None,
    services: Any,
    worker_services: Any,
    service_kwargs: Any,
    security: Any,
    protocol: str | None,
    blocked_handlers: Any,
    interface: str | None,
    worker_class: Any,
    scheduler_kwargs: dict[str, Any] | None,
    validate: bool,
    worker_kwargs: dict[str, Any],
) -> Plan:
    if ip is not None:
        warnings.warn("LocalCluster(ip=...) is deprecated: use host=", DeprecationWarning,
                      stacklevel=3)
        host = ip
    if start is not None:
        warnings.warn("LocalCluster(start=...) is deprecated and has no effect (as in dask)",
                      DeprecationWarning, stacklevel=3)
    refuse("LocalCluster", loop=loop, services=services, worker_services=worker_services,
           service_kwargs=service_kwargs)
    if scheduler_kwargs is not None and not isinstance(scheduler_kwargs, dict):
        raise TypeError(f"scheduler_kwargs must be a dict, got {scheduler_kwargs!r}")
    use_processes = _worker_class_processes(worker_class, processes)
    if host and "://" in host:
        scheme, _, host = host.partition("://")
        protocol = protocol or scheme
    if protocol is None and getattr(security, "require_encryption", False):
        protocol = "tls"  # as dask: a Security that requires encryption means TLS
    check_protocol(protocol, ("tcp", "tls") if use_processes else ("tcp", "tls", "inproc"))
    name = (protocol or "").removesuffix("://") or ("tcp" if use_processes else "inproc")
    if interface is not None:
        if host:
            raise ValueError("give host or interface, not both")
        host = interface_address(interface)
    sizes = default_sizes(n_workers, threads_per_worker, use_processes)
    if sizes[0] < 0 or sizes[1] < 1:
        raise ValueError(f"n_workers must be >= 0 and threads_per_worker >= 1, got {sizes}")
    worker_kwargs = dict(worker_kwargs)
    if worker_kwargs:  # (only then: the import costs the client's start-up)
        import inspect

        from shoal.deploy.worker import Worker

        known = inspect.signature(Worker.__init__).parameters
        unknown = sorted(k for k in worker_kwargs if k not in known or k == "kwargs")
        if unknown:
            raise TypeError(f"LocalCluster got unexpected keyword arguments {unknown}")
    for own in ("nthreads", "host", "name", "scheduler_ip", "scheduler_file"):
        if own in worker_kwargs:
            raise TypeError(f"LocalCluster chooses its workers' {own}: it cannot be a keyword")
    if "memory_limit" in worker_kwargs:
        memory = parse_memory_limit(worker_kwargs.pop("memory_limit"), sizes[1])
    elif sizes[0]:
        memory = parse_memory_limit("auto", 1, sizes[0])
    else:
        memory = parse_memory_limit("auto", sizes[1])
    if worker_dashboard_address is not None:
        worker_kwargs["dashboard_address"] = worker_dashboard_address
    if validate:
        worker_kwargs.setdefault("validate", True)
    scheduler = dict(scheduler_kwargs or {})
    if blocked_handlers:
        scheduler["blocked_handlers"] = list(blocked_handlers)
    if validate:
        scheduler.setdefault("validate", True)
    from shoal.deploy.child_args import log_level_name

    level = None if silence_logs is None or silence_logs is False else log_level_name(silence_logs)
    return Plan(use_processes, sizes[0], sizes[1], host or "127.0.0.1", name, memory, level,
                scheduler, worker_kwargs)
