"""``LocalCluster.get_logs()``: the logs of the cluster manager, the scheduler
and the workers, as dask.distributed's ``Cluster.get_logs()`` gives them::

    {"Cluster": Log("..."), "Scheduler": Log("..."), "tcp://...": Log("..."), ...}

``Log`` is a ``str`` of newline-separated lines that Jupyter shows as a
block; ``Logs`` a ``dict`` of them.  The "Cluster" lines are what the
supervisor that restarts workers logged in this process (oldest first; all
local clusters of the process together); the scheduler's and workers' come
from their log buffers (newest first), through a short-lived client.
"""

from __future__ import annotations

import html
import logging
import threading
from typing import Any

from shoal.diagnostics.logs import DEFAULT_FORMAT, LogBuffer

_buffer: LogBuffer | None = None
_lock = threading.Lock()


class Log(str):
    """Newline-separated log lines."""

    def _repr_html_(self) -> str:
        return f'<pre style="white-space: pre-wrap">{html.escape(self)}</pre>'


class Logs(dict):  # type: ignore[type-arg]
    """Logs by process: ``{"Scheduler": Log, address: Log, ...}``."""

    def _repr_html_(self) -> str:
        parts = [f"<details><summary>{html.escape(str(name))}</summary>{Log(text)._repr_html_()}</details>"
                 for name, text in self.items()]
        return "".join(parts)


def record_cluster_logs() -> None:
    """Keep the lines of this process's supervisors (logger ``shoal.nanny``)
    from now on (once per process; ``admin.log-length`` of them)."""
    global _buffer
    from shoal import config

    with _lock:
        if _buffer is None:
            _buffer = LogBuffer(int(config.get("admin.log-length")), DEFAULT_FORMAT)
            logging.getLogger("shoal.nanny").addHandler(_buffer)


def cluster_lines() -> list[str]:
    """The supervisors' lines, oldest first."""
    return [text for _, text in reversed(_buffer.tail())] if _buffer is not None else []


def get_logs(cluster: Any, scheduler: bool = True, workers: Any = True,
             cluster_manager: bool = True) -> Any:
    """``Logs`` of ``cluster`` (an awaitable for an asynchronous cluster)."""
    if workers is not True and workers is not False and workers is not None:
        workers = [workers] if isinstance(workers, str) else list(workers)
    if cluster.asynchronous:
        return _get_logs_async(cluster, scheduler, workers, cluster_manager)
    from shoal.client.client import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        scheduler_lines = client.get_scheduler_logs() if scheduler else None
        worker_lines = _worker_logs(client.get_worker_logs, workers)
    return _assemble(cluster_manager, scheduler_lines, worker_lines)


async def _get_logs_async(cluster: Any, scheduler: bool, workers: Any, cluster_manager: bool) -> Logs:
    from shoal.client.client import Client

    async with Client(cluster.scheduler_address, asynchronous=True, set_as_default=False) as client:
        scheduler_lines = await client.get_scheduler_logs() if scheduler else None
        worker_lines = _worker_logs(client.get_worker_logs, workers)
        if worker_lines is not None:
            worker_lines = await worker_lines
    return _assemble(cluster_manager, scheduler_lines, worker_lines)


def _worker_logs(get: Any, workers: Any) -> Any:
    if workers is False or workers is None:
        return None
    return get(workers=None if workers is True else workers)


def _assemble(cluster_manager: bool, scheduler: list[tuple[str, str]] | None,
              workers: dict[str, list[tuple[str, str]]] | None) -> Logs:
    logs = Logs()
    if cluster_manager:
        logs["Cluster"] = Log("\n".join(cluster_lines()))
    if scheduler is not None:
        logs["Scheduler"] = Log("\n".join(text for _, text in scheduler))
    for address, lines in (workers or {}).items():
        logs[address] = Log("\n".join(text for _, text in lines))
    return logs
