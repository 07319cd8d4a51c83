"""What an event may be: topics and messages for ``log_event``, checked where
they are logged (client, worker, scheduler), so that a bad one raises there
and never reaches a connection.

Rules (dask.distributed's, plus what msgpack itself refuses):
1. A topic is a non-empty ``str``; ``log_event`` also takes a list (or
   tuple, set) of topics, to log one message under each.
2. A message is plain data: ``None``, ``bool``, ``int`` (64-bit), ``float``,
   ``str``, ``bytes``, lists and tuples of messages, and dicts with ``str``
   keys and message values.  Exact types: a numpy number or a ``str``
   subclass is refused, as dask refuses it; convert it first.

This module imports nothing heavy: the client's ``log_event`` uses it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: the client's mixins stay light
if TYPE_CHECKING:
    from typing import Any

#: topics every client subscribes to when it connects (see shoal.worker.printing)
PRINT_TOPIC = "print"
WARN_TOPIC = "warn"
#: a nanny restarted a worker, and why (shoal/scheduler/liveness.py): clients log it
RESTART_TOPIC = "worker-restarted"
DEFAULT_TOPICS = (PRINT_TOPIC, WARN_TOPIC, RESTART_TOPIC)

_MAX_DEPTH = 100
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


def forwarding_topic(logger_name: str | None) -> str:
    """The topic on which workers publish the records of a forwarded logger
    (dask.distributed's name for it)."""
    return f"forwarded-log-record-forward-logging-{logger_name or '<root>'}"


def check_topic(topic: Any) -> str:
    """``topic`` if it is a topic name, else ``TypeError``/``ValueError``."""
    if type(topic) is not str:
        raise TypeError(f"an event topic is a str, got {type(topic).__name__}: {topic!r}")
    if not topic:
        raise ValueError("an event topic must not be empty")
    return topic


def check_topics(topic: Any) -> list[str]:
    """``log_event``'s ``topic`` (a name, or a list, tuple or set of names) as a list."""
    if type(topic) is str:
        return [check_topic(topic)]
    if isinstance(topic, (list, tuple, set, frozenset)):
        return [check_topic(t) for t in topic]
    raise TypeError(f"an event topic is a str or a list of str, got {type(topic).__name__}: "
                    f"{topic!r}")


def check_message(msg: Any) -> None:
    """``TypeError`` naming the first part of ``msg`` that is not plain
    msgpack data (see the module docstring)."""
    problem = _problem(msg, "msg", 0)
    if problem is not None:
        raise TypeError(f"Message must be msgpack serializable (dicts with str keys, lists, "
                        f"str, bytes, numbers, bools, None): {problem}")


def is_plain(v: Any) -> bool:
    """Whether ``v`` is a valid event message."""
    return _problem(v, "msg", 0) is None


def _problem(v: Any, where: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"{where} is nested more than {_MAX_DEPTH} levels deep"
    t = type(v)
    if v is None or t is bool or t is float or t is bytes:
        return None
    if t is int:
        if _INT_MIN <= v <= _INT_MAX:
            return None
        return f"{where} is an int outside 64 bits"
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where} is a str that is not valid unicode (lone surrogates)"
        return None
    if t is list or t is tuple:
        for i, x in enumerate(v):
            p = _problem(x, f"{where}[{i}]", depth + 1)
            if p is not None:
                return p
        return None
    if t is dict:
        for k, x in v.items():
            if type(k) is not str:
                return f"{where} has a key of type {type(k).__name__} ({k!r}); keys must be str"
            p = _problem(k, f"a key of {where}", depth + 1)
            if p is not None:
                return p
            p = _problem(x, f"{where}[{k!r}]", depth + 1)
            if p is not None:
                return p
        return None
    return f"{where} is of type {t.__module__}.{t.__qualname__}"
