"""What the dashboard shows, taken from the scheduler's state: compact,
JSON-able views.  PURE: records in, plain dicts out; no clocks, sockets,
threads or I/O (the caller passes the time), so it is tested directly.

The scheduler's dashboard feed (``shoal/scheduler/dashboard_feed.py``) calls
these on its event loop when the dashboard process asks, and sends the
result as it is; everything else (JSON, HTTP, charts) happens in the
dashboard process.  Two kinds of view, by what they cost:

* ``cluster_view``: the scheduler and its workers, O(workers): cheap at any
  rate.
* ``task_summary`` (counts by function and state) and ``task_graph``: a walk
  over every task, O(tasks).  The feed calls them within a time budget
  (a 200,000-task graph is walked every few seconds, not on every update).

Worker memory follows dask's split: ``managed`` is the bytes of the results
the worker holds (as ``sizeof`` measured them), ``unmanaged`` the rest of its
process memory, ``spilled`` what it wrote to disk.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from shoal.scheduler.records import TaskRecord, WorkerRecord

#: states shown, in the order the progress bars draw them
STATES = ("released", "waiting", "queued", "no-worker", "processing", "memory", "erred")


def worker_view(w: WorkerRecord, now_unix: float, now_monotonic: float) -> dict[str, Any]:
    """One worker as the pages draw it."""
    metrics = w.metrics
    spilled = metrics.get("spilled_bytes") or {}
    memory = int(w.memory)
    managed = int(w.nbytes)
    return {
        "address": w.address,
        "name": str(w.name),
        "host": w.host,
        "pid": w.pid,
        "nthreads": w.nthreads,
        "status": w.status,
        "memory": memory,
        "managed": managed,
        "unmanaged": max(0, memory - managed),
        "spilled": int(spilled.get("disk", 0)) if isinstance(spilled, Mapping) else 0,
        "memory_limit": int(w.memory_limit),
        "cpu": float(metrics.get("cpu", 0.0)),
        "processing": len(w.processing),
        "executing": int(w.executing),
        "in_memory": len(w.has_what),
        "ready": int(metrics.get("ready", 0)),
        "transfer_incoming_bytes": int(metrics.get("transfer_incoming_bytes", 0)),
        "started": float(metrics.get("started", 0.0)),
        "last_seen": now_unix - max(0.0, now_monotonic - w.last_seen),
    }


def cluster_view(workers: Iterable[WorkerRecord], n_tasks: int, n_clients: int,
                 now_unix: float, now_monotonic: float) -> dict[str, Any]:
    """The workers (sorted by name) and their totals."""
    views = sorted((worker_view(w, now_unix, now_monotonic) for w in workers),
                   key=lambda v: (len(v["name"]), v["name"]))
    totals = {"workers": len(views), "tasks": n_tasks, "clients": n_clients}
    for field in ("nthreads", "memory", "managed", "unmanaged", "spilled", "memory_limit",
                  "processing", "executing", "in_memory", "transfer_incoming_bytes"):
        totals[field] = sum(v[field] for v in views)
    totals["cpu"] = sum(v["cpu"] for v in views)
    return {"time": now_unix, "workers": views, "totals": totals}


#: (function name, state) of a task record, read in C (the walks below run
#: over every task: ~26 ms for 200,000 where a Python loop takes ~45)
_PREFIX_STATE = operator.attrgetter("prefix", "state._value_")
_HAS_DEPS = operator.attrgetter("deps")


def task_summary(tasks: Iterable[TaskRecord]) -> dict[str, dict[str, int]]:
    """``{function name: {state: count}}`` over ``tasks`` (the key prefix
    names the function, as in dask's progress bars)."""
    out: dict[str, dict[str, int]] = {}
    for (prefix, state), n in Counter(map(_PREFIX_STATE, tasks)).items():
        counts = out.get(prefix)
        if counts is None:
            counts = out[prefix] = {}
        counts[state] = n
    return out


def progress_rows(summary: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """One row per function for the progress bars, the largest first:
    waiting (waiting, queued, no-worker), processing, memory, erred,
    released, and the total."""
    rows = []
    for prefix, counts in summary.items():
        row: dict[str, Any] = {
            "name": prefix,
            "waiting": counts.get("waiting", 0) + counts.get("queued", 0) + counts.get("no-worker", 0),
            "processing": counts.get("processing", 0),
            "memory": counts.get("memory", 0),
            "erred": counts.get("erred", 0),
            "released": counts.get("released", 0),
        }
        row["total"] = sum(row[s] for s in ("waiting", "processing", "memory", "erred", "released"))
        rows.append(row)
    rows.sort(key=lambda r: (-r["total"], r["name"]))
    return rows


def state_counts(summary: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Tasks by state, over every function."""
    out: dict[str, int] = {}
    for counts in summary.values():
        for state, n in counts.items():
            out[state] = out.get(state, 0) + n
    return out


def task_graph(tasks: Mapping[str, TaskRecord], limit: int) -> dict[str, Any]:
    """The graph of the tasks the scheduler holds: one node per task while
    there are at most ``limit`` of them, else one node per function
    ("grouped"), with an edge wherever a task of one depends on a task of
    the other.  Nodes: ``{"id", "name", "state" | "counts"}``; edges:
    ``[from index, to index]`` (dependency first)."""
    if len(tasks) <= limit:
        index = {key: i for i, key in enumerate(tasks)}
        nodes = [{"id": key, "name": ts.prefix, "state": ts.state.value} for key, ts in tasks.items()]
        edges = [[index[d.key], index[key]] for key, ts in tasks.items() for d in ts.deps
                 if d.key in index]
        return {"grouped": False, "nodes": nodes, "edges": edges}
    groups = task_summary(tasks.values())
    pairs: set[tuple[str, str]] = set()
    for ts in filter(_HAS_DEPS, tasks.values()):  # only the tasks with dependencies, in Python
        for d in ts.deps:
            if d.prefix != ts.prefix:
                pairs.add((d.prefix, ts.prefix))
    names = sorted(groups)
    where = {name: i for i, name in enumerate(names)}
    return {
        "grouped": True,
        "nodes": [{"id": name, "name": name, "counts": groups[name]} for name in names],
        "edges": sorted([where[a], where[b]] for a, b in pairs if a in where and b in where),
    }
