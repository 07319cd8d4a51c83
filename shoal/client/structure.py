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
