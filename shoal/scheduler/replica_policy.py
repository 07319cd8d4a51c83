"""Which extra copies of results the Active Memory Manager drops.  PURE.

dask's ``ReduceReplicas`` policy: a result held by several workers keeps
one copy, plus one for each worker that will run a task needing it (a
dependent processing there, or one not placed yet); the others go, taken
first from the workers holding the most bytes.  Reads the scheduler's
records and changes nothing; ``active_memory.py`` carries the drops out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.scheduler.records import ERRED, MEMORY, PROCESSING, RELEASED, TaskRecord, WorkerRecord

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

#: past this many dependents, each is assumed to want a copy (dask's cut-off)
MANY_WAITERS = 20


def wanted_copies(ts: TaskRecord) -> int:
    """Copies of ``ts``'s result worth keeping: one, or one per worker that
    will run a dependent (a dependent not placed yet counts as a worker)."""
    waiters = [d for d in (ts.dependents or ()) if d.state not in (MEMORY, ERRED, RELEASED)]
    if len(waiters) <= 1:
        return 1
    if len(waiters) >= MANY_WAITERS:
        return len(waiters)
    places: set[object] = set()
    for d in waiters:
        places.add(d.processing_on if d.state is PROCESSING and d.processing_on is not None else d)
    return max(1, len(places))


def _keep(ts: TaskRecord) -> set[WorkerRecord]:
    """Holders running a dependent of ``ts``: their copy is needed there."""
    return {d.processing_on for d in (ts.dependents or ())
            if d.state is PROCESSING and d.processing_on is not None and d.processing_on in ts.who_has}


def reduce_replicas(state: SchedulerState) -> dict[WorkerRecord, list[str]]:
    """``{worker: keys whose copy it should drop}`` (never a last copy)."""
    drops: dict[WorkerRecord, list[str]] = {}
    for ts in state.tasks.values():
        if ts.state is not MEMORY or len(ts.who_has) < 2:
            continue
        extra = len(ts.who_has) - wanted_copies(ts)
        if extra <= 0:
            continue
        keep = _keep(ts)
        # the copies on the fullest workers go first
        for w in sorted(ts.who_has, key=lambda w: (-max(w.memory, w.nbytes), w.address)):
            if extra <= 0:
                break
            if w in keep or w.status not in ("running", "paused"):
                continue
            drops.setdefault(w, []).append(ts.key)
            extra -= 1
    return drops


__all__ = ["reduce_replicas", "wanted_copies"]
