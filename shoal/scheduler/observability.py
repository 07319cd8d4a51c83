"""What clients ask to see inside the cluster: task stream, profiles, call
stacks, logs, versions, sizes, metadata, a dump of everything, bandwidths.

A scheduler extension (see ``server.py``).  Most answers are gathered from
the workers (``worker/observability.py`` answers there) and merged here; the
scheduler adds its own logs, versions, state, and the event loop profile it
starts taking at the first ``profile(scheduler=True)``.  Nothing here changes
how tasks run, except ``set_metadata`` (metadata lives in the state,
``SchedulerState.task_metadata``, so that a task's entry goes when it is
forgotten, as in dask).

A worker that leaves while it is asked is left out of the answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from shoal.diagnostics import profiling, task_stream
from shoal.diagnostics.logs import install as install_log_buffer
from shoal.errors import CommClosedError, SchedulerError
from shoal.scheduler.records import TaskRecord, WorkerRecord, key_prefix

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class SchedulerObservability:
    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.log_buffer = install_log_buffer(int(config.get("admin.log-length")),
                                             str(config.get("admin.log-format")))
        self.timeout = config.duration("admin.diagnostics-timeout")
        self.benchmark_duration = config.duration("admin.benchmark-duration") or 1.0
        self.profile_settings = (config.duration("worker.profile.interval") or 0.01,
                                 config.duration("worker.profile.cycle") or 1.0,
                                 int(config.get("worker.profile.history-length")))
        self.sampler: profiling.Sampler | None = None

    async def _ask(self, method: str, workers: list[str] | None = None, strict: bool = True,
                   timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """``{worker: answer}`` from each of ``workers`` (None: all); see ``_keep``."""
        answers = await self.server.ask_workers(method, workers, timeout or self.timeout, **args)
        return _keep(method, answers, strict)

    async def _ask_each(self, method: str, args: dict[str, dict[str, Any]], strict: bool = True,
                        timeout: float | None = None) -> dict[str, Any]:
        """``_ask`` with arguments of its own for each worker: ``{worker: args}``."""
        answers = await asyncio.gather(*(
            self.server.ask_worker(a, method, timeout or self.timeout, **kw) for a, kw in args.items()
        ), return_exceptions=True)
        return _keep(method, dict(zip(args, answers)), strict)

    # ------------------------------------------------------------------ task stream

    async def rpc_task_stream_cursor(self, client_id: str) -> dict[str, Any]:
        return await self._ask("task_stream_cursor", strict=False)

    async def rpc_get_task_stream(self, client_id: str, start: float | None = None,
                                  stop: float | None = None, count: int | None = None,
                                  since: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every worker's runs (since the cursors in ``since``: a worker not
        in it started later, so all its runs count), ordered by when they
        ended, chosen as dask does."""
        count = task_stream.check_count(count)
        if since is None:
            answers = await self._ask("task_stream", strict=False, start=start, stop=stop, count=count)
        else:
            answers = await self._ask_each("task_stream", {
                a: {"since": since.get(a, [None, 0])} for a in self.server.worker_comms
            }, strict=False)
        records = [r for runs in answers.values() for r in runs]
        records.sort(key=task_stream.record_stop)
        if since is not None:
            return records
        return task_stream.choose(records, task_stream.record_stop, start, stop, count)

    # ------------------------------------------------------------------ profile, call stack

    async def rpc_profile(self, client_id: str, key: str | None = None, start: float | None = None,
                          stop: float | None = None, workers: list[str] | None = None,
                          merge_workers: bool = True, server: bool = False,
                          scheduler: bool = False) -> dict[str, Any]:
        if scheduler:
            return self._scheduler_profile(start, stop)
        trees = await self._ask("profile", workers, strict=False, start=start, stop=stop, key=key,
                                server=server)
        if merge_workers:
            return profiling.merge(*trees.values()) if trees else profiling.create()
        return trees

    def _scheduler_profile(self, start: float | None, stop: float | None) -> dict[str, Any]:
        """The scheduler's event loop thread, sampled from the first call on."""
        if self.sampler is None:
            server = self.server
            interval, cycle, history = self.profile_settings
            self.sampler = profiling.Sampler(
                interval, cycle, history, dict, lambda: server.status not in ("closing", "closed"),
                key_prefix, name="shoal-profile-scheduler",
            )
            self.sampler.watch_thread(threading.get_ident())  # handlers run on the loop
            self.sampler.start()
        return self.sampler.profile(start, stop, thread=True)

    async def rpc_call_stack(self, client_id: str, keys: list[str] | None = None
                             ) -> dict[str, dict[str, list[str]]]:
        """``{worker: {key: frame lines}}`` of the tasks running now (of
        ``keys``, or of what those keys wait for)."""
        if keys is None:
            answers = await self._ask("call_stack")
        else:
            by_worker = _processing(self.server.state.tasks, keys)
            answers = await self._ask_each("call_stack", {a: {"keys": k} for a, k in by_worker.items()})
        return {w: stacks for w, stacks in answers.items() if stacks}

    # ------------------------------------------------------------------ logs, versions, sizes

    async def rpc_logs(self, client_id: str, n: int | None = None) -> list[tuple[str, str]]:
        return self.log_buffer.tail(n)

    async def rpc_worker_logs(self, client_id: str, n: int | None = None,
                              workers: list[str] | None = None) -> dict[str, Any]:
        return await self._ask("logs", workers, n=n)

    async def rpc_versions(self, client_id: str, packages: list[str] | None = None) -> dict[str, Any]:
        from shoal.diagnostics.versions import get_versions

        workers = await self._ask("versions", strict=False, packages=packages or [])
        return {"scheduler": get_versions(packages or ()), "workers": workers}

    async def rpc_nbytes(self, client_id: str, keys: list[str] | None = None,
                         summary: bool = True) -> dict[str, int]:
        tasks = self.server.state.tasks
        if keys is None:
            sizes = {k: ts.nbytes for k, ts in tasks.items() if ts.who_has}
        else:
            unknown = [k for k in keys if k not in tasks]
            if unknown:
                raise KeyError(f"the scheduler does not know the keys {unknown[:5]}")
            sizes = {k: tasks[k].nbytes for k in keys}
        if not summary:
            return sizes
        out: dict[str, int] = {}
        for k, n in sizes.items():
            prefix = key_prefix(k)
            out[prefix] = out.get(prefix, 0) + n
        return out

    # ------------------------------------------------------------------ metadata

    async def rpc_set_metadata(self, client_id: str, keys: list[Any], value: Any) -> None:
        if not keys:
            raise ValueError("set_metadata needs at least one key")
        node = self.server.state.task_metadata
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = node[k] = {}
            node = child
        node[keys[-1]] = value

    async def rpc_get_metadata(self, client_id: str, keys: list[Any]) -> list[Any]:
        """``[True, value]``, or ``[False, None]`` if the path is not there."""
        node: Any = self.server.state.task_metadata
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return [False, None]
            node = node[k]
        return [True, node]

    # ------------------------------------------------------------------ cluster dump

    async def rpc_cluster_state(self, client_id: str, exclude: list[str] | None = None) -> dict[str, Any]:
        """The scheduler's and every worker's state (``cluster_dump.py``
        describes the layout); a worker's error is given as its text."""
        from shoal.diagnostics.versions import get_versions

        skip = set(exclude or ())
        answers = await self.server.ask_workers("dump_state", None, self.timeout, exclude=sorted(skip))
        versions = await self._ask("versions", strict=False)
        workers = {w: (f"{type(a).__name__}: {a}" if isinstance(a, BaseException) else a)
                   for w, a in answers.items()}
        return {
            "scheduler": self._state_dump(skip),
            "workers": workers,
            "versions": {"scheduler": get_versions(), "workers": versions},
        }

    async def rpc_dump_cluster_state(self, client_id: str, filename: str,
                                     exclude: list[str] | None = None, format: str = "msgpack") -> str:
        """Write the cluster state to ``filename`` on the scheduler's disk."""
        from shoal.diagnostics import cluster_dump

        cluster_dump.check_format(format)
        state = await self.rpc_cluster_state(client_id, exclude)
        return await asyncio.to_thread(cluster_dump.write, state, filename, format)

    def _state_dump(self, skip: set[str]) -> dict[str, Any]:
        server = self.server
        state = server.state
        dump = {
            "type": "Scheduler", "id": server.id, "address": server.address,
            "status": server.status, "started": server.started, "pid": os.getpid(),
            "tasks": {k: _fields(_task_fields(ts), skip) for k, ts in state.tasks.items()},
            "workers": {a: _fields(_worker_fields(w), skip) for a, w in state.workers.items()},
            "clients": {c: {"wants": sorted(ts.key for ts in r.wants)} for c, r in state.clients.items()},
            "queued": [ts.key for _, _, ts in sorted(state.queued, key=lambda e: e[:2])
                       if ts.state.value == "queued"],
            "unrunnable": sorted(ts.key for ts in state.unrunnable),
            "task_metadata": state.task_metadata,
            "counts": state.counts(),
            "transition_log": [[k, str(a), str(b), s, t] for k, a, b, s, t in state.log],
            "logs": self.log_buffer.tail(100),
        }
        return _fields(dump, skip)

    # ------------------------------------------------------------------ benchmarks

    async def rpc_benchmark_hardware(self, client_id: str) -> dict[str, dict[str, float]]:
        """dask's layout: ``{"disk"|"memory"|"network": {size: bytes/s}}``,
        averaged over the workers (network: over disjoint pairs of workers)."""
        limit = self.benchmark_duration + (self.timeout or 10.0)
        results: dict[str, list[dict[str, float]]] = {}
        for kind in ("disk", "memory"):
            results[kind] = list((await self._ask(f"benchmark_{kind}", timeout=limit)).values())
        addresses = list(self.server.worker_comms)
        random.shuffle(addresses)
        pairs = {a: {"peer": b} for a, b in zip(addresses[::2], addresses[1::2])}
        results["network"] = list((await self._ask_each("benchmark_network", pairs, timeout=limit)).values())
        return {kind: _mean_by_size(runs) for kind, runs in results.items()}


def _keep(method: str, answers: dict[str, Any], strict: bool) -> dict[str, Any]:
    """The answers that are not errors.  A worker that left meanwhile is
    left out; another error is raised (``strict``) or logged and left out."""
    out = {}
    for address, answer in answers.items():
        if isinstance(answer, (CommClosedError, SchedulerError)):
            continue
        if isinstance(answer, BaseException):
            if strict:
                raise answer
            logger.warning("worker %s could not answer %r: %s", address, method, answer)
            continue
        out[address] = answer
    return out


def _processing(tasks: dict[str, TaskRecord], keys: list[str]) -> dict[str, list[str]]:
    """``{worker: keys}`` of the tasks processing among ``keys`` and among
    what they wait for, transitively (a task may be processing on a worker
    that still waits for its dependencies)."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        ts = tasks.get(key)
        if ts is None or key in seen:
            continue
        seen.add(key)
        state = ts.state.value
        if state in ("waiting", "queued", "no-worker", "processing"):
            stack.extend(d.key for d in ts.deps if d.state.value != "memory")
        if state == "processing" and ts.processing_on is not None:
            out.setdefault(ts.processing_on.address, []).append(key)
    return out


def _mean_by_size(runs: list[dict[str, float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for run in runs:
        for size, rate in run.items():
            sums.setdefault(size, []).append(rate)
    return {size: sum(v) / len(v) for size, v in sums.items()}


def _fields(record: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in skip} if skip else record


def _task_fields(ts: TaskRecord) -> dict[str, Any]:
    return {
        "key": ts.key, "state": ts.state.value, "prefix": ts.prefix, "priority": ts.priority,
        "dependencies": [d.key for d in ts.deps],
        "dependents": sorted(d.key for d in ts.dependents or ()),
        "who_has": [w.address for w in ts.who_has],
        "processing_on": ts.processing_on.address if ts.processing_on is not None else None,
        "nbytes": ts.nbytes, "type": ts.type_name, "retries": ts.retries, "run_id": ts.run_id,
        "suspicious": ts.suspicious, "n_wanted": ts.n_wanted,
        "exception_text": ts.exception[2] if ts.exception is not None else None,
        "erred_on": ts.erred_on or None,
    }


def _worker_fields(w: WorkerRecord) -> dict[str, Any]:
    return {
        "address": w.address, "name": w.name, "status": w.status, "host": w.host, "pid": w.pid,
        "nthreads": w.nthreads, "memory_limit": w.memory_limit, "resources": dict(w.resources),
        "processing": sorted(ts.key for ts in w.processing),
        "long_running": sorted(ts.key for ts in w.long_running),
        "has_what": sorted(ts.key for ts in w.has_what),
        "occupancy": w.occupancy, "nbytes": w.nbytes, "executing": w.executing, "memory": w.memory,
        "metrics": dict(w.metrics),
        "last_seen": time.time() - max(0.0, time.monotonic() - w.last_seen),
    }
