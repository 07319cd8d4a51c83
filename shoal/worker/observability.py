"""What a worker tells about itself when asked: its task stream, profile,
call stacks, logs, versions, state, and bandwidth measurements.

A worker extension (``WorkerServer.add_extension``): the scheduler's requests
``task_stream``, ``profile``, ``call_stack``, ``logs``, ``versions``,
``dump_state`` and ``benchmark_*`` are answered by the ``rpc_*`` methods here.

Data flow::

    task threads --(key, start, stop, thread, size)--> executor.runs (deque)
    task threads --{thread: key}--> executor.running <-- Sampler thread
    _gather_dep --record_transfer--> transfers of the keys' dependents
    scheduler Request --> rpc_* --> answer (times turned into unix times here)

The task stream is kept here rather than sent with each ``TaskFinished``:
recording a run costs a tuple and a deque append on the task's thread, and
nothing crosses the wire or touches the scheduler until someone asks, which
is rare next to how often tasks finish.  The price: the runs of a worker that
died are lost with it, and the scheduler asks every worker on each request.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from shoal.diagnostics import profiling, task_stream
from shoal.diagnostics.logs import install as install_log_buffer
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload
from shoal.scheduler.records import key_prefix

if TYPE_CHECKING:
    from shoal.worker.server import WorkerServer

#: task fields ``dump_state`` reports, as (name in the dump, attribute)
_TASK_FIELDS = (("state", "state"), ("priority", "priority"), ("dependencies", "deps"),
                ("dependents", "dependents"), ("nbytes", "nbytes"), ("type", "type_name"),
                ("who_has", "who_has"), ("run_id", "run_id"), ("reported", "reported"),
                ("actor", "actor"))


class WorkerObservability:
    def __init__(self, server: WorkerServer) -> None:
        from shoal import config

        self.server = server
        self.incarnation = uuid.uuid4().hex  # task-stream cursors of another process do not apply
        # key -> [(start, stop, source)]: fetches made for the task key (perf_counter times)
        self.transfers: dict[str, list[tuple[float, float, str]]] = {}
        self.transfers_kept = int(config.get("worker.task-stream-length"))
        self.transfer_incoming_bytes = 0  # fetched from peers, in all
        self.started = time.time()
        self.log_buffer = install_log_buffer(int(config.get("worker.log-length")),
                                             str(config.get("admin.log-format")))
        self.benchmark_duration = config.duration("admin.benchmark-duration") or 1.0
        self.request_timeout = config.duration("admin.diagnostics-timeout")
        self.sampler: profiling.Sampler | None = None
        if config.get("worker.profile.enabled"):
            ref = weakref.ref(server)

            def alive() -> bool:
                s = ref()
                return s is not None and s.status not in ("closing", "closed")

            def running() -> dict[int, str]:
                s = ref()
                executor = getattr(s, "executor", None)
                return dict(executor.running) if executor is not None else {}

            from shoal.worker.executor import TaskExecutor

            self.sampler = profiling.Sampler(
                config.duration("worker.profile.interval") or 0.01,
                config.duration("worker.profile.cycle") or 1.0,
                int(config.get("worker.profile.history-length")),
                running, alive, key_prefix, stop_code=TaskExecutor._run.__code__,
            ).start()

    def heartbeat_metrics(self) -> dict[str, Any]:
        """What the worker's heartbeat adds from here (the dashboard shows it)."""
        return {"started": self.started, "transfer_incoming_bytes": self.transfer_incoming_bytes}

    def close(self) -> None:
        """The worker is closing: stop sampling."""
        if self.sampler is not None:
            self.sampler.stop()

    # ------------------------------------------------------------------ task stream

    def record_transfer(self, source: str, keys: list[str], start: float, stop: float,
                        nbytes: int = 0) -> None:
        """``keys`` (``nbytes`` in all) came from ``source`` between ``start``
        and ``stop`` (perf_counter): the runs of the tasks waiting for them
        show it."""
        self.transfer_incoming_bytes += nbytes
        tasks = self.server.state.tasks
        transfers = self.transfers
        for key in keys:
            ts = tasks.get(key)
            for dependent in ts.dependents if ts is not None else ():
                transfers.setdefault(dependent, []).append((start, stop, source))
        while len(transfers) > self.transfers_kept:
            del transfers[next(iter(transfers))]

    def _runs(self) -> list[tuple[int, str, float, float, int, int, str | None]]:
        executor = getattr(self.server, "executor", None)
        if executor is None:
            return []
        runs = list(executor.runs)
        runs.sort(key=lambda r: r[3])
        return runs

    def rpc_task_stream_cursor(self) -> list[Any]:
        """Where the task stream is now: runs after it are newer."""
        runs = self._runs()
        return [self.incarnation, max((r[0] for r in runs), default=-1) + 1]

    def rpc_task_stream(self, start: float | None = None, stop: float | None = None,
                        count: int | None = None, since: list[Any] | None = None) -> list[dict[str, Any]]:
        """This worker's task runs (dask's records, unix times), chosen by
        ``task_stream.choose``; with ``since`` (a cursor), only later runs."""
        offset = time.time() - time.perf_counter()
        runs = self._runs()
        if since is not None:
            first = since[1] if since[0] == self.incarnation else 0
            runs = [r for r in runs if r[0] >= first]
        runs = task_stream.choose(
            runs, lambda r: r[3],
            None if start is None else start - offset, None if stop is None else stop - offset, count,
        )
        return self._records(runs, offset)

    def rpc_task_stream_tail(self, since: list[Any] | None = None, count: int = 200) -> dict[str, Any]:
        """The last ``count`` runs after the cursor ``since`` (all runs if
        None, or of another process) and the cursor after them: what the
        dashboard shows of a busy worker (``scheduler/dashboard_feed.py``).
        Compact, as it passes through the scheduler: each run is
        ``[key, thread, start, stop, nbytes, type or None (failed),
        [[start, stop, source] of each transfer]]`` (unix times); the
        dashboard turns them into task-stream records (``dashboard/views.py``).
        ``spills``: the moves to and from disk after the cursor, the last
        ``count``, each ``[action ("disk-write" or "disk-read"), key, start,
        stop, bytes]``."""
        executor = getattr(self.server, "executor", None)
        runs = list(executor.runs) if executor is not None else []  # one copy, in the order run
        mine = since if since is not None and since[0] == self.incarnation else None
        first = mine[1] if mine is not None else 0
        # task threads append in nearly the order of their sequence numbers
        cursor = [self.incarnation, max((r[0] for r in runs[-64:]), default=first - 1) + 1]
        data = getattr(self.server, "data", None)
        events = list(getattr(data, "events", ()))
        first_event = mine[2] if mine is not None and len(mine) > 2 else 0
        cursor.append(events[-1][0] + 1 if events else first_event)
        tail: list[tuple[int, str, float, float, int, int, str | None]] = []
        for run in reversed(runs):
            if run[0] < first or len(tail) >= count:
                break
            tail.append(run)
        tail.reverse()
        offset = time.time() - time.perf_counter()
        transfers = self.transfers
        runs_out = [[key, thread, t0 + offset, t1 + offset, nbytes, type_name,
                     [[a + offset, b + offset, src] for a, b, src in transfers.get(key, ()) if b <= t0]]
                    for _, key, t0, t1, thread, nbytes, type_name in tail]
        spills = [[action, key, t0 + offset, t1 + offset, nbytes]
                  for number, action, key, t0, t1, nbytes in events[-count:] if number >= first_event]
        return {"cursor": cursor, "runs": runs_out, "spills": spills}

    def _records(self, runs: list[tuple[int, str, float, float, int, int, str | None]],
                 offset: float) -> list[dict[str, Any]]:
        """Runs as dask's task-stream records (``offset``: perf_counter to unix time)."""
        address = self.server.address
        transfers = self.transfers
        return [task_stream.record(address, key, thread, t0 + offset, t1 + offset, nbytes, type_name,
                                   [(a + offset, b + offset, src)
                                    for a, b, src in transfers.get(key, ()) if b <= t0])
                for _, key, t0, t1, thread, nbytes, type_name in runs]

    # ------------------------------------------------------------------ profile and call stacks

    def rpc_profile(self, start: float | None = None, stop: float | None = None,
                    key: str | None = None, server: bool = False) -> dict[str, Any]:
        """The call tree of the task threads (``server``: of this worker's
        event loop thread, sampled from the first such request on)."""
        if self.sampler is None:
            return profiling.create()
        if server and self.sampler.thread_ident is None:
            self.sampler.watch_thread(threading.get_ident())  # we run on the loop
        return self.sampler.profile(start, stop, key=key, thread=server)

    def rpc_call_stack(self, keys: list[str] | None = None) -> dict[str, list[str]]:
        """``{key: [frame lines, outermost first]}`` of the tasks running now."""
        from shoal.worker.executor import TaskExecutor

        executor = getattr(self.server, "executor", None)
        if executor is None:
            return {}
        wanted = None if keys is None else set(keys)
        frames = sys._current_frames()
        out = {}
        for ident, key in list(executor.running.items()):
            frame = frames.get(ident)
            if frame is not None and (wanted is None or key in wanted):
                out[key] = profiling.format_stack(profiling.stack_of(frame, TaskExecutor._run.__code__))
        del frames
        return out

    # ------------------------------------------------------------------ logs, versions, state

    def rpc_logs(self, n: int | None = None) -> list[tuple[str, str]]:
        return self.log_buffer.tail(n)

    def rpc_versions(self, packages: list[str] | None = None) -> dict[str, Any]:
        from shoal.diagnostics.versions import get_versions

        return get_versions(packages or ())

    def rpc_dump_state(self, exclude: list[str] | None = None) -> dict[str, Any]:
        """This worker's state for ``client.dump_cluster_state`` (the fields
        named in ``exclude`` left out, at the top and in each task)."""
        s = self.server
        state = s.state
        skip = set(exclude or ())
        tasks = {
            key: {name: _plain(getattr(ts, attr)) for name, attr in _TASK_FIELDS if name not in skip}
            for key, ts in state.tasks.items()
        }
        executor = getattr(s, "executor", None)
        dump = {
            "type": "Worker", "address": s.address, "name": s.name, "status": s.status,
            "scheduler": s.scheduler_address, "pid": os.getpid(), "nthreads": s.nthreads,
            "memory_limit": s.memory_limit, "resources": dict(s.resources), "nbytes": state.nbytes,
            "tasks": tasks, "data": list(s.data), "actors": list(s.actors),
            "ready": [key for _, _, key in sorted(state.ready)],
            "executing": sorted(state.executing),
            "in_flight": {peer: list(keys) for peer, (keys, _) in state.in_flight.items()},
            "running": {str(t): k for t, k in (executor.running.items() if executor else ())},
            "logs": self.log_buffer.tail(100),
        }
        return {k: v for k, v in dump.items() if k not in skip}

    # ------------------------------------------------------------------ benchmarks

    async def rpc_benchmark_memory(self) -> dict[str, float]:
        from shoal.diagnostics.benchmark import benchmark_memory

        return await asyncio.to_thread(benchmark_memory, 0.2 * self.benchmark_duration)

    async def rpc_benchmark_disk(self) -> dict[str, float]:
        from shoal.diagnostics.benchmark import benchmark_disk

        return await asyncio.to_thread(benchmark_disk, None, 0.4 * self.benchmark_duration)

    async def rpc_benchmark_network(self, peer: str) -> dict[str, float]:
        """Echoes to and from the worker at ``peer``: bytes both ways per second."""
        from shoal.diagnostics.benchmark import NETWORK_SIZES
        from shoal.units import parse_bytes

        pool = self.server.pool
        share = 0.4 * self.benchmark_duration / len(NETWORK_SIZES)
        out = {}
        for label in NETWORK_SIZES:
            size = parse_bytes(label)
            payload = Payload(b"", [memoryview(os.urandom(size))])
            total = 0
            begin = time.perf_counter()
            while True:
                await pool.request(peer, m.Echo(pool.next_id(), payload), timeout=self.request_timeout)
                total += 2 * size
                elapsed = time.perf_counter() - begin
                if elapsed >= share:
                    break
            out[label] = total / elapsed
        return out


def _plain(value: Any) -> Any:
    """A record field as plain data for a dump."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value
