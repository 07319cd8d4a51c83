"""Choosing task-stream records: ``client.get_task_stream(start, stop, count)``.

A record is dask.distributed's layout, one dict per task run::

    {"key": "inc-8d0a...", "worker": "tcp://127.0.0.1:40211",
     "thread": 140112, "status": "OK",               # or "error"
     "startstops": [{"action": "transfer", "start": t0, "stop": t1, "source": "tcp://..."},
                    {"action": "compute", "start": t2, "stop": t3}],
     "nbytes": 28, "type": "int", "typename": "int"}  # nbytes and type: "OK" runs only

Times are unix times.  Workers keep their own runs (``worker/observability.py``)
and the scheduler merges the workers' answers (``scheduler/observability.py``);
both choose with ``choose``, dask's rules for ``start``, ``stop`` and
``count``.  Pure: no clocks, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def choose(items: list[T], stop_of: Callable[[T], float], start: float | None = None,
           stop: float | None = None, count: int | None = None) -> list[T]:
    """The items (sorted by ``stop_of``) that ended in ``[start, stop)``;
    with ``count``, the last ``count`` of them, or the first ``count`` from
    ``start`` when only ``start`` is given, or the last before ``stop`` when
    only ``stop`` is; ``count`` is ignored when both bounds are given."""
    stops = [stop_of(x) for x in items]
    lo = 0 if start is None else bisect.bisect_left(stops, start)
    hi = len(items) if stop is None else bisect.bisect_left(stops, stop)
    if count is not None and not (start is not None and stop is not None):
        if start is not None:
            hi = min(hi, lo + count)
        else:
            lo = max(lo, hi - count)
    return items[lo:hi]


def record(worker: str, key: str, thread: int, start: float, stop: float, nbytes: int,
           type_name: str | None, transfers: Any = ()) -> dict[str, Any]:
    """One run as dask's record: ``type_name`` None for a failed run;
    ``transfers``: ``(start, stop, source)`` of the fetches it waited for."""
    startstops: list[dict[str, Any]] = [
        {"action": "transfer", "start": a, "stop": b, "source": src} for a, b, src in transfers]
    startstops.append({"action": "compute", "start": start, "stop": stop})
    out: dict[str, Any] = {"key": key, "worker": worker, "thread": thread, "startstops": startstops}
    if type_name is None:
        out["status"] = "error"
    else:
        out.update(status="OK", nbytes=nbytes, type=type_name, typename=type_name)
    return out


def record_stop(record: dict[str, Any]) -> float:
    """When a task-stream record's run ended."""
    return float(max(s["stop"] for s in record["startstops"]))


def check_count(count: Any) -> int | None:
    if count is None:
        return None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be a number of records or None, got {count!r}")
    return count
