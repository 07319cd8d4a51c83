"""What the pages draw, from what the scheduler sent.  PURE: plain data in,
plain data out.

* ``flame_rows``: a profile call tree (``shoal.diagnostics.profiling``
  layout) as the parallel lists a flame graph (plotly's icicle) draws.
* ``graph_layout``: positions for the nodes of a task graph: columns by
  depth (a task right of what it depends on), rows within a column.
* ``stream_records``: the workers' compact task runs as dask's records.
"""

from __future__ import annotations

from collections import deque
from typing import Any


def flame_rows(tree: dict[str, Any], min_fraction: float = 0.001) -> dict[str, list[Any]]:
    """``{"ids", "labels", "parents", "values", "hover"}`` of the call tree,
    leaving out calls with less than ``min_fraction`` of the samples."""
    total = tree.get("count", 0)
    out: dict[str, list[Any]] = {"ids": [], "labels": [], "parents": [], "values": [], "hover": []}
    if not total:
        return out
    stack: list[tuple[dict[str, Any], str, str]] = [(tree, "all", "")]
    while stack:
        node, node_id, parent = stack.pop()
        d = node.get("description") or {}
        name = d.get("name") or "all"
        out["ids"].append(node_id)
        out["labels"].append(name if parent else f"all ({total} samples)")
        out["parents"].append(parent)
        out["values"].append(node["count"])
        where = f'{d.get("filename", "")}:{d.get("line_number", "")}' if parent else ""
        out["hover"].append(f"{where}<br>{d.get('line', '')}" if where else "")
        for ident, child in node.get("children", {}).items():
            if child["count"] / total >= min_fraction:
                stack.append((child, f"{node_id}/{ident}", node_id))
    return out


def stream_records(runs: dict[str, list[list[Any]]],
                   spills: dict[str, list[list[Any]]] | None = None) -> list[dict[str, Any]]:
    """Compact task runs by worker (``rpc_task_stream_tail``) as dask's
    task-stream records (``shoal/diagnostics/task_stream.py``); each move
    of a value to or from disk (``spills``) as a record of its own on the
    worker's ``"disk"`` row, its one step's action ``"disk-write"`` or
    ``"disk-read"``."""
    from shoal.diagnostics.task_stream import record

    out = [record(worker, *run) for worker, compact in runs.items() for run in compact]
    for worker, moves in (spills or {}).items():
        for action, key, start, stop, nbytes in moves:
            out.append({"key": key, "worker": worker, "thread": "disk", "status": "OK",
                        "startstops": [{"action": action, "start": start, "stop": stop}],
                        "nbytes": nbytes})
    return out


def graph_layout(n_nodes: int, edges: list[list[int]]) -> list[tuple[float, float]]:
    """``(x, y)`` for each node: x is the length of the longest chain of
    dependencies leading to it, y its place among the nodes of that column
    (centred).  Edges go from a dependency to its dependent; a cycle (none
    should exist) is broken where it is met."""
    dependents: list[list[int]] = [[] for _ in range(n_nodes)]
    n_deps = [0] * n_nodes
    for a, b in edges:
        if 0 <= a < n_nodes and 0 <= b < n_nodes and a != b:
            dependents[a].append(b)
            n_deps[b] += 1
    depth = [0] * n_nodes
    ready = deque(i for i in range(n_nodes) if n_deps[i] == 0)
    seen = 0
    while seen < n_nodes:
        if not ready:  # a cycle: start from the first node not placed yet
            ready.append(next(i for i in range(n_nodes) if n_deps[i] > 0))
            n_deps[ready[0]] = 0
        i = ready.popleft()
        seen += 1
        for j in dependents[i]:
            depth[j] = max(depth[j], depth[i] + 1)
            n_deps[j] -= 1
            if n_deps[j] == 0:
                ready.append(j)
    columns: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        columns.setdefault(d, []).append(i)
    pos: list[tuple[float, float]] = [(0.0, 0.0)] * n_nodes
    for d, members in columns.items():
        half = (len(members) - 1) / 2
        for row, i in enumerate(members):
            pos[i] = (float(d), row - half)
    return pos
