"""dask.distributed keywords that shoal cannot honour, refused by name.

shoal's ``Scheduler``, ``Worker``, ``Nanny`` and ``LocalCluster`` accept
every keyword their dask counterparts accept.  One shoal cannot honour is an
error naming it and saying why (never a silent ignore); leaving it unset
(``None``, ``False``, an empty container) is always fine.
"""

from __future__ import annotations

from typing import Any

#: why shoal cannot honour each keyword
REASONS = {
    "loop": "shoal's servers run on the event loop that starts them (use asynchronous=True "
            "inside your own loop)",
    "services": "shoal runs no extra services on its servers",
    "worker_services": "shoal runs no extra services on its servers",
    "service_kwargs": "shoal runs no extra services on its servers",
    "executor": "shoal runs tasks on its own thread pool (nthreads=)",
    "extensions": "shoal's extensions are objects with rpc_<method> functions: "
                  "use server.add_extension(obj)",
    "data": "shoal stores results in its own store",
    "WorkerStateClass": "shoal's worker state machine cannot be replaced",
    "transition_counter_max": "shoal's state machines have no transition limit",
    "low_level_profiler": "shoal has no statistical profiler",
    "profile_cycle_interval": "shoal has no statistical profiler",
    "jupyter": "shoal does not run a Jupyter server",
    "preload_nanny": "shoal's nanny is not a server and runs no preloads (use preload= for "
                     "the worker)",
    "preload_nanny_argv": "shoal's nanny is not a server and runs no preloads",
    "worker_class": "shoal's nanny runs shoal workers only",
}


def is_unset(value: Any) -> bool:
    return value is None or value is False or (hasattr(value, "__len__") and not len(value))


def refuse(owner: str, **given: Any) -> None:
    """``NotImplementedError`` naming the first of ``given`` that is set."""
    for name, value in given.items():
        if not is_unset(value):
            raise NotImplementedError(f"{owner}({name}=...): {REASONS[name]}")


def check_protocol(protocol: Any, allowed: tuple[str, ...] = ("tcp", "tls", "inproc")) -> None:
    """dask's ``protocol=``: shoal speaks tcp and tls (and inproc inside one process)."""
    if protocol is None:
        return
    name = str(protocol).removesuffix("://")
    if name not in allowed:
        raise NotImplementedError(f"protocol={protocol!r}: shoal speaks {', '.join(allowed)} "
                                  "(no UCX or websockets)")


def checked_plugins(plugins: Any, kind: str) -> list[Any]:
    """dask's ``plugins=`` keyword: instances of ``shoal.WorkerPlugin`` (or
    ``SchedulerPlugin``), as dask requires of its own."""
    import shoal.plugins

    base = getattr(shoal.plugins, kind)
    out = list(plugins or ())
    for p in out:
        if not isinstance(p, base):
            raise TypeError(f"plugins= takes {kind} instances (subclass shoal.{kind}), got {p!r}")
    return out
