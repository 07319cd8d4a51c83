"""Finding futures inside nested containers and putting values back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from shoal.client.future import Future


def futures_in(obj: Any) -> Iterator[Future[Any]]:
    """Every ``Future`` inside lists, tuples, sets, dicts (values), nested."""
    t = type(obj)
    if t is Future or isinstance(obj, Future):
        yield obj
    elif t in (list, tuple, set, frozenset) or isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            yield from futures_in(x)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from futures_in(v)


def replace_futures(obj: Any, value_of: Callable[[Future[Any]], Any], skip: object = None) -> Any:
    """A copy of ``obj`` with each future replaced by ``value_of(future)``.
    Where ``value_of`` returns ``skip``, the element is left out."""
    if isinstance(obj, Future):
        return value_of(obj)
    t = type(obj)
    if t is list or t is tuple or t is set or t is frozenset:
        out = []
        for x in obj:
            v = replace_futures(x, value_of, skip)
            if skip is None or v is not skip:
                out.append(v)
        return out if t is list else t(out)
    if isinstance(obj, dict):
        result = {}
        for k, x in obj.items():
            v = replace_futures(x, value_of, skip)
            if skip is None or v is not skip:
                result[k] = v
        return type(obj)(result) if type(obj) is not dict else result
    if isinstance(obj, (list, tuple)):  # subclasses, e.g. namedtuples
        items = [replace_futures(x, value_of, skip) for x in obj]
        try:
            return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
        except TypeError:
            return items
    return obj


def futures_of(o: Any, client: Any = None) -> list[Future[Any]]:
    """The futures inside ``o``, each once, in the order found: a future;
    lists, tuples, sets and dicts (values), nested; a dask collection (the
    futures its graph holds, as a persisted collection's does).  dask is
    never imported here.  With a ``client``, a cancelled future among them
    raises ``CancelledError`` (as dask's ``futures_of`` does)."""
    found: dict[Future[Any], None] = {}
    stack = [o]
    while stack:
        x = stack.pop()
        if isinstance(x, Future):
            found.setdefault(x)
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(x)))
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif _is_dask_collection(x):
            stack.extend(reversed(list(_graph_values(x))))
    futures = list(found)
    if client is not None:
        cancelled = [f.key for f in futures if f.cancelled()]
        if cancelled:
            from shoal.errors import CancelledError

            raise CancelledError(f"{len(cancelled)} futures were cancelled: {cancelled[:5]}")
    return futures


def _is_dask_collection(x: Any) -> bool:
    return callable(getattr(x, "__dask_graph__", None)) and not isinstance(x, type)


def _graph_values(collection: Any) -> Iterator[Any]:
    """The values of a collection's graph; a dask ``DataNode`` (how dask
    wraps a plain value) gives its value."""
    graph = collection.__dask_graph__()
    if graph is None:
        return
    for v in graph.values():
        inner = getattr(v, "value", None) if type(v).__name__ == "DataNode" else None
        yield inner if inner is not None else v
