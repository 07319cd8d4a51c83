"""What must always hold in a ``SchedulerState``.  PURE.

``check_invariants`` raises ``InvariantViolation`` (not ``assert``: it must
work under ``python -O``) naming the task and its story.  Tests and the
simulation harness run it after every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.errors import InvariantViolation
from shoal.scheduler.records import (
    ERRED,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    RUNNABLE,
    WAITING,
    TaskRecord,
)

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState


def _fail(state: SchedulerState, ts: TaskRecord | None, message: str) -> None:
    if ts is None:
        raise InvariantViolation(message)
    story = "\n".join(f"  {e}" for e in state.story(ts.key)[-15:])
    raise InvariantViolation(f"{ts.key!r} ({ts.state.value}): {message}\nstory:\n{story}")


def check_invariants(state: SchedulerState) -> None:
    tasks = state.tasks
    wanted_by: dict[TaskRecord, int] = {}
    for c in state.clients.values():
        for ts in c.wants:
            if tasks.get(ts.key) is not ts:
                _fail(state, ts, f"wanted by {c.client_id} but not in tasks")
            wanted_by[ts] = wanted_by.get(ts, 0) + 1
    queued = {entry[2] for entry in state.queued if entry[2].state is QUEUED}
    for key, ts in tasks.items():
        if ts.key != key:
            _fail(state, ts, f"stored under {key!r}")
        _check_task(state, ts, wanted_by.get(ts, 0), queued)
    for ts in state.unrunnable:
        if ts.state is not NO_WORKER or tasks.get(ts.key) is not ts:
            _fail(state, ts, "in unrunnable but not a live no-worker task")
    for ts in state.unknown_deps:
        if tasks.get(ts.key) is not ts or ts.state not in (ERRED, RELEASED):
            _fail(state, ts, "submitted with unknown dependencies, yet neither erred nor released")
    running = [w for w in state.workers.values() if w.status == "running"]
    if state._running is not None and state._running != running:
        _fail(state, None, "the cached list of running workers is stale")
    for address, w in state.workers.items():
        if w.address != address:
            _fail(state, None, f"worker {w.address} stored under {address}")
        if w.status not in ("running", "paused", "closing_gracefully"):
            _fail(state, None, f"worker {address} is {w.status!r} but still in the cluster")
        for ts in w.processing:
            if ts.state is not PROCESSING or ts.processing_on is not w:
                _fail(state, ts, f"in processing of {address} but processing_on={ts.processing_on}")
        if not w.long_running <= w.processing.keys():
            _fail(state, None, f"worker {address} has long-running tasks it is not processing")
        if w.stopping and any(ts.run_id in w.stopping for ts in w.processing):
            _fail(state, None, f"worker {address} counts a current run as one taken back")
        for ts in w.has_what:
            if w not in ts.who_has:
                _fail(state, ts, f"in has_what of {address} but not in who_has")
        expected = sum(w.processing.values())
        if abs(w.occupancy - expected) > 1e-6 * max(1.0, expected):
            _fail(state, None, f"worker {address} occupancy {w.occupancy} != {expected}")
        if w.nbytes != sum(ts.nbytes for ts in w.has_what):
            _fail(state, None, f"worker {address} nbytes {w.nbytes} does not add up")


def _check_task(state: SchedulerState, ts: TaskRecord, n_wanted: int, queued: set[TaskRecord]) -> None:
    tasks = state.tasks
    st = ts.state
    if ts.n_wanted != n_wanted:
        _fail(state, ts, f"n_wanted={ts.n_wanted} but {n_wanted} clients want it")
    for dep in ts.deps:
        if tasks.get(dep.key) is not dep:
            _fail(state, ts, f"dependency {dep.key!r} was forgotten")
        if not dep.dependents or ts not in dep.dependents:
            _fail(state, ts, f"missing from dependents of {dep.key!r}")
    n_waiters = 0
    for d in ts.dependents or ():
        if tasks.get(d.key) is not d:
            _fail(state, ts, f"dependent {d.key!r} was forgotten")
        if ts not in d.deps:
            _fail(state, ts, f"dependent {d.key!r} does not list it as a dependency")
        if d.state in RUNNABLE:
            n_waiters += 1
    if ts.dependents is not None and not ts.dependents:
        _fail(state, ts, "empty dependents set should be None")
    if ts.n_waiters != n_waiters:
        _fail(state, ts, f"n_waiters={ts.n_waiters} but {n_waiters} dependents are runnable")
    if st is WAITING:
        missing = sum(1 for dep in ts.deps if dep.state is not MEMORY)
        if ts.n_waiting != missing:
            _fail(state, ts, f"n_waiting={ts.n_waiting} but {missing} deps are not in memory")
        if missing == 0:
            _fail(state, ts, "waiting with every dependency in memory")
    if st is PROCESSING:
        w = ts.processing_on
        if w is None or state.workers.get(w.address) is not w or ts not in w.processing:
            _fail(state, ts, f"processing on {w}, which does not know it")
    elif ts.processing_on is not None:
        _fail(state, ts, f"processing_on={ts.processing_on} while {st.value}")
    if st in (PROCESSING, QUEUED, NO_WORKER):
        for dep in ts.deps:
            if dep.state is MEMORY:
                continue
            pipelined = (st is PROCESSING and dep.state is PROCESSING
                         and dep.processing_on is ts.processing_on)
            if not pipelined:
                _fail(state, ts, f"runnable while dependency {dep.key!r} is {dep.state.value}")
    if st is MEMORY:
        if not ts.who_has and ts.value is None:
            _fail(state, ts, "in memory with no copy anywhere")
        for w in ts.who_has:
            if state.workers.get(w.address) is not w or ts not in w.has_what:
                _fail(state, ts, f"who_has names {w.address}, which does not hold it")
    elif ts.who_has or ts.value is not None:
        _fail(state, ts, f"holds data while {st.value}")
    if st is QUEUED and ts not in queued:
        _fail(state, ts, "queued but not in the queue")
    if st is NO_WORKER and ts not in state.unrunnable:
        _fail(state, ts, "no-worker but not in unrunnable")
    if st is ERRED and ts.exception is None:
        _fail(state, ts, "erred without an exception")
    # nothing is kept that nobody needs
    if ts.n_wanted == 0 and ts.n_waiters == 0:
        if st is not RELEASED:
            _fail(state, ts, "kept although no client wants it and no dependent needs it")
        elif not ts.dependents:
            _fail(state, ts, "released and unreferenced, but not forgotten")
    if st is ERRED or st is MEMORY or st is RELEASED:
        return
    if st not in RUNNABLE:
        _fail(state, ts, f"unknown state {st!r}")
