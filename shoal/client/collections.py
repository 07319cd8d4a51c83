"""Running dask collections (delayed, bag, array, dataframe) on shoal.

``client.compute(collection)`` and ``client.persist(collection)`` turn the
collection's task graph into shoal tasks: one task per graph node, sent in a
dependency-respecting order that follows ``dask.order`` (so the scheduler's
submission-order priority is dask's priority).  ``client.get`` is the dask
scheduler interface, so ``dask.compute(...)`` runs here while a client is the
default.  dask itself is an optional dependency, imported only here.

Graph keys may be tuples (``("x", 0)``); shoal keys are strings, so a tuple
key becomes its ``str()``.  A persisted collection's graph holds shoal
futures under their own keys: a graph sent later that contains one refers to
the running task instead of sending it again.

Where the tasks run (``workers=``, ``resources=``...) is resolved per key in
``graph_options.py``.

Data flow::

    collection --collections_to_expr/optimize--> expr --__dask_graph__--> graph
    graph --convert_legacy_graph, dask.order--> TaskSpecs (execute_node + node)
          --client._submit_specs--> scheduler; futures for the wanted keys
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from shoal.client.graph_options import GraphOptions, flatten_keys
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
    return callable(getattr(obj, "__dask_graph__", None)) and not isinstance(obj, type)


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


def _running_future(node: Any, key: Hashable) -> Future[Any] | None:
    """The shoal future a graph node stands for, when the node is nothing but
    that future under its own key (a persisted collection's graph)."""
    from dask._task_spec import DataNode

    from shoal.client.future import Future

    if isinstance(node, DataNode) and isinstance(node.value, Future) and node.value.key == skey(key):
        return node.value
    return None


def submit_graph(client: Client, graph: Mapping[Hashable, Any], wanted: Iterable[Hashable],
                 options: GraphOptions | None = None,
                 annotations: Mapping[str, Mapping[Hashable, Any]] | None = None,
                 ) -> dict[Hashable, Future[Any]]:
    """Send every node of ``graph``; return futures for the ``wanted`` keys."""
    _require_dask()
    from dask._task_spec import convert_legacy_graph

    from shoal.client.future import Future

    graph = convert_legacy_graph(dict(graph))
    wanted = list(dict.fromkeys(wanted))
    missing = [k for k in wanted if k not in graph]
    if missing:
        raise KeyError(f"keys not in the task graph: {missing[:5]!r}")
    options = options if options is not None else GraphOptions()
    options.bind(set(graph), wanted, annotations)
    func_id, blob = dumps_function(execute_node)
    specs = []
    running: dict[Hashable, Future[Any]] = {}
    for key in _topological(graph):
        node = graph[key]
        future = _running_future(node, key)
        if future is not None:
            running[key] = future  # refer to it; do not send it again
            continue
        deps = {d: dependency_ref(skey(d)) for d in node.dependencies if d in graph}
        payload, dep_keys = dumps_task_args((node, deps), {})
        o = options.for_key(key)
        specs.append(m.TaskSpec(skey(key), func_id, payload, tuple(sorted(dep_keys)), o.priority,
                                o.retries, o.workers, o.allow_other_workers, o.resources, o.actor))
    wanted_s = {skey(k) for k in wanted}
    unwanted = [s.key for s in specs if s.key not in wanted_s]
    futures = client._submit_specs(specs, func_id, blob, release=unwanted) if specs else []
    by_key = {f.key: f for f in futures}
    out: dict[Hashable, Future[Any]] = {}
    for k in wanted:
        f = by_key.get(skey(k))
        out[k] = f if f is not None else Future(running[k].key, client)
    return out


def _refuse_extra(method: str, kwargs: Mapping[str, Any]) -> None:
    """dask passes compute's extra keywords to a graph optimization that
    takes none (and persist drops them): here they are an error."""
    if kwargs:
        raise TypeError(f"{method}() got unexpected keyword arguments {sorted(kwargs)}")


def _check_fifo_timeout(fifo_timeout: Any) -> None:
    """dask's fifo window; shoal has none (see the docs), but a value that
    is not a duration is still an error."""
    from shoal.units import parse_timedelta

    if fifo_timeout is not None:
        parse_timedelta(fifo_timeout)


def _options(workers: Any, allow_other_workers: Any, resources: Any, retries: Any, priority: Any,
             actors: Any, fifo_timeout: Any) -> GraphOptions:
    dask = _require_dask()
    _check_fifo_timeout(fifo_timeout)
    return GraphOptions(workers, allow_other_workers, resources, retries, priority, actors,
                        context=dask.get_annotations())


def compute(client: Client, collections: Any, optimize_graph: bool = True, workers: Any = None,
            allow_other_workers: Any = False, resources: Any = None, retries: Any = 0,
            priority: Any = 0, fifo_timeout: Any = "60s", actors: Any = None,
            traverse: bool = True, **kwargs: Any) -> Any:
    """One future per collection (other arguments pass through), for
    ``Client.compute``."""
    dask = _require_dask()
    _refuse_extra("compute", kwargs)
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    options = _options(workers, allow_other_workers, resources, retries, priority, actors,
                       fifo_timeout)
    single = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if single else list(collections)
    if traverse:
        items = [dask.delayed(a) if isinstance(a, (list, set, tuple, dict, Iterator)) else a
                 for a in items]
    colls = [a for a in items if dask.is_dask_collection(a)]
    futures: dict[Hashable, Future[Any]] = {}
    names: list[Hashable] = []
    if colls:
        expr = FinalizeCompute(collections_to_expr(colls, optimize_graph)).optimize()
        names = list(flatten_keys(expr.__dask_keys__()))
        futures = submit_graph(client, expr.__dask_graph__(), names, options,
                               expr.__dask_annotations__())
    it = iter(names)
    out = [futures[next(it)] if dask.is_dask_collection(a) else a for a in items]
    return out[0] if single else out


def persist(client: Client, collections: Any, optimize_graph: bool = True, workers: Any = None,
            allow_other_workers: Any = None, resources: Any = None, retries: Any = None,
            priority: Any = 0, fifo_timeout: Any = "60s", actors: Any = None,
            **kwargs: Any) -> Any:
    """Collections whose graphs point at running futures, for ``Client.persist``."""
    dask = _require_dask()
    _refuse_extra("persist", kwargs)
    from dask._expr import _ExprSequence
    from dask.base import collections_to_expr

    options = _options(workers, allow_other_workers, resources, retries, priority, actors,
                       fifo_timeout)
    single = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if single else list(collections)
    for c in items:
        if not dask.is_dask_collection(c):
            raise TypeError(f"persist() takes dask collections; got {type(c).__name__}")
    if not items:
        return collections
    expr = collections_to_expr(items, optimize_graph).optimize()
    keys_per = (expr.__dask_keys__() if isinstance(expr, _ExprSequence) or len(items) > 1
                else [expr.__dask_keys__()])
    all_keys = [k for ks in keys_per for k in flatten_keys(ks)]
    futures = submit_graph(client, expr.__dask_graph__(), all_keys, options,
                           expr.__dask_annotations__())
    rebuilt = []
    for coll, ks in zip(items, keys_per, strict=True):
        rebuild, state = coll.__dask_postpersist__()
        rebuilt.append(rebuild({k: futures[k] for k in flatten_keys(ks)}, *state))
    return rebuilt[0] if single else rebuilt


def get(client: Client, dsk: Any, keys: Any, workers: Any = None, allow_other_workers: Any = None,
        resources: Any = None, sync: bool = True, asynchronous: bool | None = None,
        direct: bool | None = None, retries: Any = None, priority: Any = 0,
        fifo_timeout: Any = "60s", actors: Any = None) -> Any:
    """The dask scheduler interface: compute ``keys`` of ``dsk`` here; the
    values (``sync=True``) or futures in the shape of ``keys``."""
    options = _options(workers, allow_other_workers, resources, retries, priority, actors,
                       fifo_timeout)
    annotations = None
    if not isinstance(dsk, Mapping):
        annotations = dsk.__dask_annotations__() if hasattr(dsk, "__dask_annotations__") else None
        dsk = dsk.__dask_graph__()
    flat = list(flatten_keys(keys))
    futures = submit_graph(client, dsk, flat, options, annotations)
    packed = _pack(keys, futures)
    if not sync:
        return packed
    if client.asynchronous or asynchronous:
        return client.gather(packed, direct=direct, asynchronous=asynchronous)
    return _gather_seceded(client, packed, direct)


def _gather_seceded(client: Client, packed: Any, direct: bool | None) -> Any:
    """Gather; inside a task, out of the worker's thread pool meanwhile (a
    task that computes a graph must not hold a thread its tasks need)."""
    from shoal.worker.executor import current_task

    task = current_task()
    seceded = False
    if task is not None and task[0] is not None:
        from shoal.worker.context import secede

        secede()
        seceded = True
    try:
        return client.gather(packed, direct=direct)
    finally:
        if seceded:
            from shoal.worker.context import rejoin

            rejoin()


def _pack(keys: Any, values: Mapping[Hashable, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def normalize_collection(client: Client, collection: Any) -> Any:
    """``client.normalize_collection``: the collection with the tasks whose
    keys this client already holds futures for replaced by those futures,
    and what only they needed left out; the collection itself if none."""
    dask = _require_dask()
    if not dask.is_dask_collection(collection):
        raise TypeError(f"normalize_collection() takes a dask collection; got "
                        f"{type(collection).__name__}")
    from dask._task_spec import convert_legacy_graph

    from shoal.client.future import Future

    graph = dict(collection.__dask_graph__())
    known = {k: skey(k) for k in graph if skey(k) in client.futures}
    if not known:
        return collection
    for k, s in known.items():
        graph[k] = Future(s, client)
    nodes = convert_legacy_graph(graph)
    needed: set[Hashable] = set()
    stack = list(flatten_keys(collection.__dask_keys__()))
    while stack:
        k = stack.pop()
        if k in needed or k not in nodes:
            continue
        needed.add(k)
        stack.extend(nodes[k].dependencies)
    culled = {k: graph[k] for k in graph if k in needed}
    from dask.delayed import Delayed

    if isinstance(collection, Delayed):
        return Delayed(collection.key, culled)
    import copy

    out = copy.copy(collection)
    try:
        out.dask = culled
    except AttributeError:
        raise NotImplementedError(
            f"normalize_collection() cannot give a {type(collection).__name__} a new graph "
            "(expression-based collections such as dask dataframes keep theirs)") from None
    return out
