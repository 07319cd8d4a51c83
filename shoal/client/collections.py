"""Running dask collections (delayed, bag, array, dataframe) on shoal.

``client.compute(collection)`` and ``client.persist(collection)`` turn the
collection's task graph into shoal tasks: one task per graph node, sent in a
dependency-respecting order that follows ``dask.order`` (so the scheduler's
submission-order priority is dask's priority).  ``client.get`` is the dask
scheduler interface, so ``dask.compute(...)`` runs here while a client is the
default.  dask itself is an optional dependency, imported only here.

Graph keys may be tuples (``("x", 0)``); shoal keys are strings, so a tuple
key becomes its ``str()``.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import dependency_ref, dumps_function, dumps_task_args

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client
    from shoal.client.future import Future


def _require_dask() -> Any:
    try:
        import dask
    except ImportError:  # pragma: no cover - the extra is not installed
        raise ImportError(
            "client.compute/persist of dask collections needs dask: pip install 'shoal[dask]'"
        ) from None
    return dask


def skey(key: Hashable) -> str:
    """The shoal key of a dask graph key."""
    return key if isinstance(key, str) else str(key)


def is_collection(obj: Any) -> bool:
    return hasattr(obj, "__dask_graph__") and callable(getattr(obj, "__dask_graph__", None))


def execute_node(node: Any, deps: dict[Hashable, Any]) -> Any:
    """Run one dask graph node on a worker, given its dependencies' values."""
    return node(deps)


def _topological(graph: Mapping[Any, Any]) -> list[Hashable]:
    """Dependencies first; among ready nodes, dask.order's priority first."""
    from dask.order import order

    priority: dict[Any, int] = order(graph)
    dependents: dict[Hashable, list[Hashable]] = {k: [] for k in graph}
    missing: dict[Hashable, int] = {}
    for k, node in graph.items():
        deps = [d for d in node.dependencies if d in graph]
        missing[k] = len(deps)
        for d in deps:
            dependents[d].append(k)
    ready = [(priority.get(k, 0), i, k) for i, k in enumerate(graph) if missing[k] == 0]
    heapq.heapify(ready)
    out = []
    counter = len(graph)
    while ready:
        _, _, k = heapq.heappop(ready)
        out.append(k)
        for d in dependents[k]:
            missing[d] -= 1
            if missing[d] == 0:
                counter += 1
                heapq.heappush(ready, (priority.get(d, 0), counter, d))
    if len(out) != len(graph):
        raise ValueError("the task graph has a cycle")
    return out


def submit_graph(client: Client, graph: Mapping[Hashable, Any], wanted: Iterable[Hashable],
                 retries: int = 0, priority: int = 0) -> dict[Hashable, Future[Any]]:
    """Send every node of ``graph``; return futures for the ``wanted`` keys."""
    _require_dask()
    from dask._task_spec import convert_legacy_graph

    graph = convert_legacy_graph(dict(graph))
    wanted = list(dict.fromkeys(wanted))
    func_id, blob = dumps_function(execute_node)
    specs = []
    for key in _topological(graph):
        node = graph[key]
        deps = {d: dependency_ref(skey(d)) for d in node.dependencies if d in graph}
        payload, dep_keys = dumps_task_args((node, deps), {})
        specs.append(m.TaskSpec(skey(key), func_id, payload, sorted(dep_keys), priority, retries))
    wanted_s = {skey(k) for k in wanted}
    unwanted = [s.key for s in specs if s.key not in wanted_s]
    futures = client._submit_specs(specs, func_id, blob, release=unwanted)
    by_key = {f.key: f for f in futures}
    return {k: by_key[skey(k)] for k in wanted}


def compute(client: Client, collections: Any, optimize_graph: bool = True, retries: int = 0,
            priority: int = 0) -> Any:
    """One future per collection (others pass through) for ``Client.compute``."""
    _require_dask()
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    single = not isinstance(collections, (list, tuple))
    items = [collections] if single else list(collections)
    out: list[Any] = []
    for item in items:
        if not is_collection(item):
            out.append(item)
            continue
        expr = FinalizeCompute(collections_to_expr([item], optimize_graph)).optimize()
        keys = _flatten(expr.__dask_keys__())
        futures = submit_graph(client, expr.__dask_graph__(), keys, retries, priority)
        out.append(futures[keys[0]])
    return out[0] if single else out


def persist(client: Client, collections: Any, optimize_graph: bool = True, retries: int = 0,
            priority: int = 0) -> Any:
    """Collections whose graphs point at running futures, for ``Client.persist``."""
    _require_dask()
    from dask._expr import _ExprSequence
    from dask.base import collections_to_expr

    single = not isinstance(collections, (list, tuple))
    items = [collections] if single else list(collections)
    colls = [c for c in items if is_collection(c)]
    if not colls:
        return collections
    expr = collections_to_expr(colls, optimize_graph).optimize()
    keys_per = expr.__dask_keys__() if isinstance(expr, _ExprSequence) or len(colls) > 1 else [expr.__dask_keys__()]
    all_keys = [k for ks in keys_per for k in _flatten(ks)]
    futures = submit_graph(client, expr.__dask_graph__(), all_keys, retries, priority)
    rebuilt = []
    for coll, ks in zip(colls, keys_per, strict=True):
        flat = _flatten(ks)
        rebuild, state = coll.__dask_postpersist__()
        rebuilt.append(rebuild({k: futures[k] for k in flat}, *state))
    it = iter(rebuilt)
    out = [next(it) if is_collection(c) else c for c in items]
    return out[0] if single else out


def get(client: Client, dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """The dask scheduler interface: compute ``keys`` of ``dsk`` here."""
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    flat = _flatten(keys)
    futures = submit_graph(client, dsk, flat)
    values = dict(zip(flat, client.gather([futures[k] for k in flat]), strict=True))
    return _pack(keys, values)


def _flatten(keys: Any) -> list[Hashable]:
    if isinstance(keys, list):
        out: list[Hashable] = []
        for k in keys:
            out.extend(_flatten(k))
        return out
    return [keys]


def _pack(keys: Any, values: dict[Hashable, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]
