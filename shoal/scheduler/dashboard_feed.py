"""What the scheduler gives its dashboard: compact views of its state, on
request, and the tail of the workers' task streams.

A scheduler extension (see ``server.py``).  The dashboard process (a client
of the scheduler: ``shoal/dashboard/feed.py``) asks a few times a second
while a browser looks, and never otherwise; nothing here runs per task:

* ``dashboard_snapshot``: the workers and their totals, O(workers) every
  time; the counts of tasks by function and state, O(tasks), only when the
  walk's cost fits ``dashboard.scheduler-budget`` (the fraction of the
  scheduler's time the walks may take: a walk that took 20 ms waits
  20 ms / budget before the next; until then the last counts are sent
  again, with the time they were taken).
* ``dashboard_graph``: the task graph (grouped by function when large),
  under the same budget (half of it each: both walks together stay within it).
* ``dashboard_task_stream``: each worker's last runs since the cursor the
  dashboard holds for it, at most ``count`` per worker (the workers cut
  their lists; a busy cluster's stream is sampled, not shipped whole).

It also measures the event loop's lag (a timer that should fire every
``interval`` seconds, and how late it does) and counts the messages the
scheduler handles, for ``/metrics``.

Data flow::

    dashboard process --Request(dashboard_snapshot)--> here --snapshot.py--> Response
    here --task_stream_tail(since, count)--> each worker --> merged records
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from shoal.dashboard import snapshot
from shoal.errors import CommClosedError, SchedulerError

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer


class _Budget:
    """When an O(tasks) walk may run again: after ``cost / fraction`` seconds."""

    __slots__ = ("fraction", "next_at")

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.next_at = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.next_at

    def spent(self, start: float, stop: float) -> None:
        self.next_at = stop + (stop - start) / self.fraction


class DashboardFeed:
    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        fraction = float(config.get("dashboard.scheduler-budget"))
        if not 0 < fraction <= 1:
            raise ValueError(f"dashboard.scheduler-budget must be in (0, 1], got {fraction}")
        self.lag_interval = config.duration("dashboard.lag-interval") or 0.5
        self.timeout = config.duration("admin.diagnostics-timeout")
        # half the budget each: both walks together stay within it
        self._summary_budget = _Budget(fraction / 2)
        self._graph_budget = _Budget(fraction / 2)
        self._summary: dict[str, dict[str, int]] = {}
        self._summary_time = 0.0
        self._graph: dict[str, Any] = {"grouped": False, "nodes": [], "edges": []}
        self._graph_time = 0.0
        self.loop_lag = 0.0
        self._lag_watch = False
        #: seconds this extension's handlers ran on the scheduler's loop, in all
        #: (what an open dashboard costs the scheduler; benchmarks/dashboard.py)
        self.busy_seconds = 0.0

    # ------------------------------------------------------------------ views

    async def rpc_dashboard_snapshot(self, client_id: str, tasks: bool = True) -> dict[str, Any]:
        """The workers, their totals and (``tasks``) the task counts by
        function, plus the scheduler's own numbers."""
        began = time.perf_counter()
        server = self.server
        state = server.state
        self._watch_lag()
        view = snapshot.cluster_view(state.workers.values(), len(state.tasks),
                                     len(state.clients) - len(state.pseudo_clients),
                                     time.time(), time.monotonic())
        if tasks:
            now = time.perf_counter()
            if self._summary_budget.allows(now):
                self._summary = snapshot.task_summary(state.tasks.values())
                self._summary_time = time.time()
                self._summary_budget.spent(now, time.perf_counter())
            view["progress"] = snapshot.progress_rows(self._summary)
            view["counts"] = snapshot.state_counts(self._summary)
            view["counts_time"] = self._summary_time
        view["scheduler"] = {
            "address": server.address, "id": server.id, "started": server.started,
            "status": server.status, "pid": os.getpid(), "loop_lag": self.loop_lag,
            "messages_received": server.messages_received,
            "transitions": state.transition_counter,
            "dashboard_seconds": self.busy_seconds,
        }
        self.busy_seconds += time.perf_counter() - began
        return view

    async def rpc_dashboard_graph(self, client_id: str, limit: int = 500) -> dict[str, Any]:
        """The task graph, at most ``limit`` task nodes (else grouped)."""
        now = time.perf_counter()
        if self._graph_budget.allows(now):
            self._graph = snapshot.task_graph(self.server.state.tasks, limit)
            self._graph_time = time.time()
            self._graph_budget.spent(now, time.perf_counter())
        self.busy_seconds += time.perf_counter() - now
        return {**self._graph, "time": self._graph_time}

    async def rpc_dashboard_task_stream(self, client_id: str, cursors: dict[str, Any],
                                        count: int = 200) -> dict[str, Any]:
        """Each worker's runs after its cursor in ``cursors`` (all of a
        worker not in it), at most ``count`` per worker, the newest ones:
        ``{"cursors": {worker: cursor}, "runs": {worker: [compact runs]},
        "spills": {worker: [compact moves to and from disk]}}``
        (``worker/observability.py``, ``rpc_task_stream_tail``)."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a number of records, got {count!r}")
        server = self.server
        addresses = list(server.worker_comms)
        answers = await asyncio.gather(*(
            server.ask_worker(a, "task_stream_tail", self.timeout, since=cursors.get(a), count=count)
            for a in addresses
        ), return_exceptions=True)
        began = time.perf_counter()
        out_cursors: dict[str, Any] = {}
        runs: dict[str, list[Any]] = {}
        spills: dict[str, list[Any]] = {}
        for address, answer in zip(addresses, answers):
            if isinstance(answer, (CommClosedError, SchedulerError, TimeoutError)):
                continue  # left or busy meanwhile: its runs come next time
            if isinstance(answer, BaseException):
                raise answer
            out_cursors[address] = answer["cursor"]
            runs[address] = answer["runs"]
            if answer.get("spills"):
                spills[address] = answer["spills"]
        self.busy_seconds += time.perf_counter() - began
        return {"cursors": out_cursors, "runs": runs, "spills": spills}

    async def rpc_dashboard_link(self, client_id: str) -> str | None:
        """Where this scheduler's dashboard is (None without one)."""
        return self.server.dashboard_link

    # ------------------------------------------------------------------ loop lag

    def _watch_lag(self) -> None:
        if not self._lag_watch:
            self._lag_watch = True
            self.server._spawn(self._measure_lag())

    async def _measure_lag(self) -> None:
        interval = self.lag_interval
        loop = asyncio.get_running_loop()
        while self.server.status == "running":
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag = max(0.0, loop.time() - start - interval)
