"""Questions clients ask about the cluster: where keys are, what workers
hold and run, the scheduler's description of itself and its workers.

A scheduler extension (see ``server.py``): each ``rpc_<method>`` answers the
client request of that name.  Read-only: nothing here changes the state.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from shoal.scheduler.records import WorkerRecord

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer


class Queries:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server

    def _addresses(self, workers: list[str] | None) -> list[str]:
        if workers is None:
            return list(self.server.state.workers)
        return self.server.resolve_workers(workers)

    async def rpc_who_has(self, client_id: str, keys: list[str] | None = None) -> dict[str, list[str]]:
        return self.server.state.who_has(keys)

    async def rpc_has_what(self, client_id: str, workers: list[str] | None = None
                           ) -> dict[str, list[str]]:
        return self.server.state.has_what(self._addresses(workers) if workers is not None else None)

    async def rpc_task_states(self, client_id: str, keys: list[str] | None = None) -> dict[str, str]:
        tasks = self.server.state.tasks
        if keys is None:
            return {k: ts.state.value for k, ts in tasks.items()}
        return {k: tasks[k].state.value if k in tasks else "forgotten" for k in keys}

    async def rpc_processing(self, client_id: str, workers: list[str] | None = None
                             ) -> dict[str, list[str]]:
        ws = self.server.state.workers
        return {a: [ts.key for ts in ws[a].processing] for a in self._addresses(workers)}

    async def rpc_nthreads(self, client_id: str, workers: list[str] | None = None) -> dict[str, int]:
        ws = self.server.state.workers
        return {a: ws[a].nthreads for a in self._addresses(workers)}

    async def rpc_story(self, client_id: str, keys: list[str]) -> list[list[Any]]:
        return [list(e) for e in self.server.state.story(*keys)]

    async def rpc_scheduler_info(self, client_id: str, n_workers: int = -1) -> dict[str, Any]:
        """dask's layout: the scheduler, then ``workers`` (at most
        ``n_workers`` of them, -1: all) with their ``metrics``."""
        server = self.server
        state = server.state
        records = list(state.workers.values())
        shown = records if n_workers < 0 else records[:n_workers]
        return {
            "type": "Scheduler",
            "id": server.id,
            "address": server.address,
            "services": dict(server.services),
            "started": server.started,
            "n_workers": len(records),
            "total_threads": sum(w.nthreads for w in records),
            "total_memory": sum(w.memory_limit for w in records),
            "workers": {w.address: worker_info(w) for w in shown},
            "tasks": len(state.tasks),
            "counts": state.counts(),
        }


def worker_info(w: WorkerRecord) -> dict[str, Any]:
    """One worker as dask describes it in ``scheduler_info()["workers"]``."""
    metrics = w.metrics
    managed = w.nbytes  # every value the worker holds, spilled ones included (as dask)
    memory = w.memory  # the process's, shared-memory values counted in full
    spilled = dict(metrics.get("spilled_bytes") or {"memory": 0, "disk": 0})
    counts = Counter(ts.state.value for ts in w.processing)
    task_counts = {
        "executing": w.executing,
        "processing": len(w.processing),
        "memory": len(w.has_what),
        **{k: v for k, v in counts.items() if k != "processing"},
    }
    return {
        "type": "Worker",
        "id": w.name,
        "name": w.name,
        "host": w.host,
        "pid": w.pid,
        "resources": dict(w.resources),
        "nthreads": w.nthreads,
        "memory_limit": w.memory_limit,
        "status": w.status,
        "last_seen": time.time() - max(0.0, time.monotonic() - w.last_seen),
        "local_directory": metrics.get("local_directory", ""),
        "services": {},
        # dask gives the nanny's address; a shoal worker's supervisor has none
        "nanny": metrics.get("nanny") or ("supervisor" if w.supervised else None),
        "metrics": {
            "executing": w.executing,
            "in_memory": len(w.has_what),
            "ready": int(metrics.get("ready", 0)),
            "in_flight": int(metrics.get("in_flight", 0)),
            "processing": len(w.processing),
            "memory": memory,
            "managed_bytes": managed,
            # what the process uses beyond the values it holds in memory
            "unmanaged_bytes": max(0, memory - max(0, managed - int(spilled.get("memory", 0)))),
            "spilled_bytes": spilled,
            "cpu": float(metrics.get("cpu", 0.0)),
            "num_fds": int(metrics.get("num_fds", 0)),
            "time": float(metrics.get("time", 0.0)),
            "task_counts": task_counts,
            "nbytes": managed,
            **dict(metrics.get("custom") or {}),  # Worker(metrics=...): the user's own
        },
    }
