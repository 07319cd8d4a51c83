"""Keyword arguments -> the command line of a scheduler or worker process.

A ``LocalCluster`` of processes, a ``Nanny`` and ``shoal worker --nworkers N``
start their schedulers and workers as ``shoal scheduler ...`` /
``shoal worker ... --no-nanny`` processes (forked or spawned).  These
functions write those command lines from ``Scheduler``/``Worker`` keywords,
one table each, so that the keywords mean the same in a process as in
Python.  A keyword that cannot cross to another process (an object such as
a plugin) is an error naming it.  ``security`` never goes on a command line
(other users can read those): it goes in the environment
(``shoal.security.security_env``).
"""

from __future__ import annotations

import shlex
from typing import Any

from shoal.deploy.sizing import format_resources, parse_resources

#: Worker keyword -> the ``shoal worker`` option carrying it
WORKER_OPTIONS = {
    "nthreads": "--nthreads",
    "name": "--name",
    "host": "--host",
    "port": "--worker-port",
    "interface": "--interface",
    "protocol": "--protocol",
    "listen_address": "--listen-address",
    "contact_address": "--contact-address",
    "memory_limit": "--memory-limit",
    "resources": "--resources",
    "local_directory": "--local-directory",
    "death_timeout": "--death-timeout",
    "lifetime": "--lifetime",
    "lifetime_stagger": "--lifetime-stagger",
    "lifetime_restart": "--lifetime-restart",
    "preload": "--preload",
    "preload_argv": "--preload-argv",
    "dashboard_address": "--dashboard-address",
    "dashboard": "--dashboard",
    "validate": "--validate",
    "heartbeat_interval": "--heartbeat-interval",
    "silence_logs": "--log-level",
    "scheduler_sni": "--scheduler-sni",
}

#: Scheduler keyword -> the ``shoal scheduler`` option carrying it
SCHEDULER_OPTIONS = {
    "idle_timeout": "--idle-timeout",
    "preload": "--preload",
    "preload_argv": "--preload-argv",
    "dashboard_address": "--dashboard-address",
    "dashboard": "--dashboard",
    "validate": "--validate",
    "allowed_failures": "--allowed-failures",
    "worker_ttl": "--worker-ttl",
    "blocked_handlers": "--blocked-handlers",
    "contact_address": "--contact-address",
    "scheduler_file": "--scheduler-file",
    "protocol": "--protocol",
    "silence_logs": "--log-level",
}

#: options that are switches: ``--x`` for True, ``--no-x`` for False
_SWITCHES = {"--lifetime-restart", "--dashboard", "--validate"}


def log_level_name(level: Any) -> str:
    """dask's ``silence_logs`` (a logging level, or False/None: don't
    silence) as a ``--log-level`` value."""
    import logging

    if level is None or level is False:
        return "INFO"
    if isinstance(level, str):
        return level.upper()
    return logging.getLevelName(int(level))


def _argv(table: dict[str, str], who: str, options: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        flag = table.get(key)
        if flag is None:
            raise NotImplementedError(
                f"{who}({key}=...) cannot be passed to a {who.lower()} process; "
                f"the keywords that can are {sorted(table)}")
        if value is None:
            continue
        if flag in _SWITCHES:
            if value or flag != "--validate":
                out.append(flag if value else "--no-" + flag[2:])
        elif key in ("preload", "blocked_handlers"):
            items = [value] if isinstance(value, str) else list(value)
            if key == "blocked_handlers":
                out += [flag, ",".join(items)] if items else []
            else:
                for item in items:
                    out += [flag, item]
        elif key == "preload_argv":
            items = shlex.split(value) if isinstance(value, str) else list(value)
            if items:
                out += [flag, shlex.join(items)]
        elif key == "resources":
            if value:
                out += [flag, format_resources(parse_resources(value))]
        elif key == "silence_logs":
            out += [flag, log_level_name(value)]
        else:
            out += [flag, str(value)]
    return out


def worker_argv(scheduler: str, options: dict[str, Any]) -> list[str]:
    """``shoal worker SCHEDULER ... --no-nanny --supervised`` for
    ``Worker(scheduler, **options)``: the worker process a supervisor (a
    LocalCluster's, a Nanny's, ``shoal worker``'s) starts and would start
    again when asked (``client.restart``), which the scheduler is told."""
    return ["worker", scheduler, "--no-nanny", "--supervised",
            *_argv(WORKER_OPTIONS, "Worker", options)]


def worker_command_argv(scheduler: str, options: dict[str, Any], nanny: bool = True,
                        nworkers: int = 1) -> list[str]:
    """``shoal worker SCHEDULER ...`` as a person would type it, for a
    worker started elsewhere (a subprocess, over ssh, in a batch job):
    ``nworkers`` workers under a nanny (``--name N`` names them N-0, N-1...
    when more than one), or with ``nanny=False`` one worker alone."""
    if not isinstance(nworkers, int) or isinstance(nworkers, bool) or nworkers < 1:
        raise ValueError(f"nworkers must be a positive int, got {nworkers!r}")
    if not nanny and nworkers > 1:
        raise ValueError("one worker without a nanny: nworkers > 1 needs nanny=True")
    head = ["worker", scheduler, "--nanny" if nanny else "--no-nanny"]
    if nworkers > 1:
        head += ["--nworkers", str(nworkers)]
    return [*head, *_argv(WORKER_OPTIONS, "Worker", options)]


def scheduler_argv(options: dict[str, Any]) -> list[str]:
    """The ``shoal scheduler`` options for ``Scheduler(**options)`` (host and
    port are the caller's: it binds the socket)."""
    return _argv(SCHEDULER_OPTIONS, "Scheduler", options)


#: ``worker_class`` values meaning a worker under a nanny / a worker alone
NANNY_CLASSES = frozenset({"shoal.Nanny", "shoal.deploy.nanny.Nanny", "distributed.Nanny",
                           "dask.distributed.Nanny", "distributed.nanny.Nanny"})
WORKER_CLASSES = frozenset({"shoal.Worker", "shoal.deploy.worker.Worker", "distributed.Worker",
                            "dask.distributed.Worker", "distributed.worker.Worker"})


def uses_nanny(worker_class: Any) -> bool:
    """dask's ``worker_class`` (a name or a class) for a worker process
    started elsewhere: True for a nanny, False for a worker alone."""
    if not isinstance(worker_class, str):
        worker_class = f"{worker_class.__module__}.{worker_class.__qualname__}"
    if worker_class in NANNY_CLASSES:
        return True
    if worker_class in WORKER_CLASSES:
        return False
    raise NotImplementedError(f"worker_class={worker_class!r}: shoal starts its own workers only "
                              "(shoal.Nanny or shoal.Worker)")
