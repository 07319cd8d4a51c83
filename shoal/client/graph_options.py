"""Where and how the tasks of a dask graph run: the ``workers=``,
``allow_other_workers=``, ``resources=``, ``retries=``, ``priority=`` and
``actors=`` keywords of ``Client.compute``, ``persist`` and ``get``, and
dask's annotations (``with dask.annotate(...)``), resolved to one set of
restrictions per task key.

Rules (dask.distributed's, plus the per-key mappings of its older releases):

1. A plain value applies to every task of the graph: ``workers="w1"`` or a
   list of workers, ``resources={"GPU": 1}``, ``retries=2``, ``priority=5``,
   ``allow_other_workers=True``.  A callable is called with each task's key
   and returns that task's value (as dask does for global annotations).
2. A mapping applies to the tasks it names: ``workers={coll: "w1"}``,
   ``resources={("x", 0): {"GPU": 1}}``, ``retries={coll: 3}``,
   ``priority={key: 10}``.  A mapping key is a task key, a dask collection
   (its output keys) or a tuple of those.  ``resources`` is a mapping when
   every value is a dict.  A named key that is not in the graph sent is an
   error, not a no-op.
3. Precedence, highest first: a mapping keyword, an annotation dask put on
   the task's layer, a plain keyword, the annotations of the enclosing
   ``dask.annotate`` block when the call is made.
4. ``actors=True`` makes the requested keys actors; ``actors=`` a key, a
   collection, or a list/tuple/set of them makes those; a dict maps those
   to True/False.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

#: the annotations (and keywords) that change how a task runs
_KINDS = ("workers", "allow_other_workers", "resources", "retries", "priority")


class TaskOptions(NamedTuple):
    """The restrictions of one task, as a ``TaskSpec`` carries them."""

    workers: list[str] | None
    allow_other_workers: bool
    resources: dict[str, float] | None
    retries: int
    priority: int
    actor: bool


def _is_collection(obj: Any) -> bool:
    return callable(getattr(obj, "__dask_graph__", None)) and not isinstance(obj, type)


def flatten_keys(keys: Any) -> Iterable[Hashable]:
    """The keys in dask's nested lists of keys, in order."""
    if isinstance(keys, list):
        for k in keys:
            yield from flatten_keys(k)
    else:
        yield keys


def expand_target(target: Any, graph_keys: Mapping[Hashable, Any] | set[Hashable]) -> list[Hashable]:
    """The task keys a mapping key names: itself, a collection's output keys,
    or those of each element of a tuple that is not itself a key."""
    if _is_collection(target):
        return list(flatten_keys(target.__dask_keys__()))
    if isinstance(target, tuple) and target not in graph_keys:
        out: list[Hashable] = []
        for t in target:
            out.extend(expand_target(t, graph_keys))
        return out
    return [target]


def _check_workers(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(w, str) for w in value):
        return list(value)
    raise TypeError(f"workers= takes a worker address or name, or a list of them; got {value!r}")


def _check_resources(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        return {k: float(v) for k, v in value.items()} or None
    raise TypeError(f"resources= takes a dict of resource name to amount, e.g. {{'GPU': 1}}; "
                    f"got {value!r}")


def _check_retries(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise TypeError(f"retries= takes a count (an int >= 0); got {value!r}")


def _check_priority(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"priority= takes a number; got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise TypeError(f"priority= in shoal is a whole number; got {value!r}")
        value = int(value)
    return int(value)


def _check_allow_other_workers(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise TypeError(f"allow_other_workers= must be True, False, or None; got {value!r}")


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "workers": _check_workers,
    "allow_other_workers": _check_allow_other_workers,
    "resources": _check_resources,
    "retries": _check_retries,
    "priority": _check_priority,
}


def _is_mapping_form(kind: str, value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    if kind == "resources":
        return bool(value) and all(isinstance(v, Mapping) for v in value.values())
    return kind in ("workers", "retries", "priority")


class GraphOptions:
    """The keywords of one compute/persist/get call, checked; ``for_key``
    resolves them (with the graph's annotations) for each task."""

    def __init__(self, workers: Any = None, allow_other_workers: Any = None,
                 resources: Any = None, retries: Any = None, priority: Any = 0,
                 actors: Any = None, context: Mapping[str, Any] | None = None) -> None:
        given = {"workers": workers, "allow_other_workers": allow_other_workers,
                 "resources": resources, "retries": retries, "priority": priority}
        self._plain: dict[str, Any] = {}  # kind -> value or callable(key)
        self._mappings: dict[str, Mapping[Any, Any]] = {}  # kind -> {target: value}
        for kind, value in (context or {}).items():
            if kind in _KINDS and value is not None:
                self._plain[kind] = value if callable(value) else _CHECKS[kind](value)
        for kind, value in given.items():
            if value is None or (kind == "priority" and value == 0 and not callable(value)):
                continue
            if _is_mapping_form(kind, value):
                for v in value.values():
                    _CHECKS[kind](v)
                self._mappings[kind] = value
            elif callable(value) and not _is_collection(value):
                self._plain[kind] = value
            else:
                self._plain[kind] = _CHECKS[kind](value)
        self._actors = actors
        if actors is not None and not isinstance(actors, (bool, Mapping, list, tuple, set, frozenset,
                                                          str)) and not _is_collection(actors):
            raise TypeError(f"actors= takes True/False, keys or collections, or a dict of them to "
                            f"True/False; got {actors!r}")
        self._per_key: dict[str, dict[Hashable, Any]] = {}
        self._actor_keys: set[Hashable] = set()

    def bind(self, graph_keys: set[Hashable], wanted: Iterable[Hashable],
             annotations: Mapping[str, Mapping[Hashable, Any]] | None = None) -> None:
        """Resolve the mappings against this graph's keys (``ValueError`` for
        a key the graph lacks) and take in the graph's own annotations."""
        for kind in _KINDS:
            layer = dict((annotations or {}).get(kind, {}))
            for target, value in self._mappings.get(kind, {}).items():
                for key in expand_target(target, graph_keys):
                    if key not in graph_keys:
                        raise ValueError(
                            f"{kind}= names {key!r}, which is not a task of the graph sent "
                            "(graph optimization may have renamed it: try optimize_graph=False)")
                    layer[key] = value
            if layer:
                self._per_key[kind] = layer
        self._actor_keys = self._expand_actors(graph_keys, list(wanted))

    def _expand_actors(self, graph_keys: set[Hashable], wanted: list[Hashable]) -> set[Hashable]:
        actors = self._actors
        if actors is None or actors is False:
            return set()
        if actors is True:
            return set(wanted)
        if isinstance(actors, Mapping):
            chosen: set[Hashable] = set()
            for target, flag in actors.items():
                if not isinstance(flag, bool):
                    raise TypeError(f"actors= dict values must be True or False; got {flag!r}")
                if flag:
                    chosen.update(expand_target(target, graph_keys))
            return chosen
        targets = list(actors) if isinstance(actors, (list, set, frozenset)) else [actors]
        return {k for t in targets for k in expand_target(t, graph_keys)}

    def _value(self, kind: str, key: Hashable) -> Any:
        per_key = self._per_key.get(kind)
        if per_key is not None and key in per_key:
            value = per_key[key]
        elif kind in self._plain:
            value = self._plain[kind]
        else:
            return _CHECKS[kind](None)
        if callable(value) and not isinstance(value, Mapping):
            value = value(key)
        return _CHECKS[kind](value)

    def for_key(self, key: Hashable) -> TaskOptions:
        return TaskOptions(
            workers=self._value("workers", key),
            allow_other_workers=self._value("allow_other_workers", key),
            resources=self._value("resources", key),
            retries=self._value("retries", key),
            priority=self._value("priority", key),
            actor=key in self._actor_keys,
        )
