"""The scheduler's task transitions, as a table.  PURE.

Each function moves one task from one state to another, fixes the counts of
its neighbours, queues messages on the state's outbox, and adds follow-up
*recommendations* (``recs[task] = next_state``) for the loop in
``SchedulerState.transitions`` to apply.  ``TRANSITIONS`` is the only route
by which a task's state changes; a pair missing from it raises
``InvalidTransition`` with the task's story.

Counts kept by these functions (checked by ``invariants.py``):

* ``n_waiting``: deps of a WAITING task that are not in memory;
* ``n_waiters``: dependents in a RUNNABLE state (waiting, queued, no-worker,
  processing): while non-zero the task's result must be kept;
* ``n_wanted``: clients holding a future for the key.

A task in memory is released when ``n_wanted == n_waiters == 0``; a released
task is forgotten when, in addition, no dependent record refers to it (while
one does, it is kept so a lost result can be recomputed from its lineage).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from shoal.protocol import messages as m
from shoal.scheduler import placement
from shoal.scheduler.records import (
    ERRED,
    FORGOTTEN,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    RUNNABLE,
    WAITING,
    SchedulerTaskStatus,
    TaskRecord,
    WorkerRecord,
)

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

Recs = dict[TaskRecord, SchedulerTaskStatus]
Transition = Callable[["SchedulerState", TaskRecord, Recs], None]


# ---------------------------------------------------------------------------
# helpers shared by several transitions
# ---------------------------------------------------------------------------


def by_priority(records: Collection[TaskRecord]) -> Collection[TaskRecord]:
    """A set of records in a fixed order, for loops whose order shows
    (messages sent, placement).  A set of records iterates in an order that
    changes from run to run (a record hashes by its id), so the same events
    would not give the same messages.  Least urgent first: the transition
    loop pops recommendations last in, first out."""
    if len(records) <= 1:
        return records
    return sorted(records, key=_priority, reverse=True)


def _priority(ts: TaskRecord) -> int:
    return ts.priority


def _unneeded(ts: TaskRecord) -> bool:
    """Nobody wants ``ts`` and no runnable dependent needs it.  A transition
    that would (re)start a task checks this: the recommendation may be stale,
    or may have overwritten, in the same batch, the one to release it (e.g.
    its last dependent erred because another input was lost with a worker)."""
    return ts.n_wanted == 0 and ts.n_waiters == 0


def _deps_lose_waiter(ts: TaskRecord, recs: Recs) -> None:
    """``ts`` left the RUNNABLE states: its deps may no longer be needed."""
    for dep in ts.deps:
        dep.n_waiters -= 1
        if dep.n_waiters == 0 and dep.n_wanted == 0 and dep.state is not RELEASED:
            recs[dep] = RELEASED


def _maybe_forget(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """A task just released that nothing refers to is forgotten at once (in
    the same step: cancelling 100k tasks is one pass over them, not two)."""
    if ts.n_wanted == 0 and not ts.dependents:
        released_forgotten(state, ts, recs)


def leave_worker(state: SchedulerState, ts: TaskRecord) -> WorkerRecord | None:
    """``ts`` no longer runs on its worker (if it did): free its slot there."""
    w = ts.processing_on
    ts.run_id = 0  # any report about that run is stale from now on
    if w is not None:
        est = w.processing.pop(ts, 0.0)
        w.long_running.discard(ts)
        w.occupancy = max(0.0, w.occupancy - est)
        ts.processing_on = None
        if state.queued:
            state.freed[w] = None
    return w


def _revoke_pipelined(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """``ts`` left its worker without a result: the dependents pipelined onto
    that worker (sent ahead, waiting there for ``ts``) are taken back."""
    if ts.dependents:
        for d in by_priority(ts.dependents):
            if d.state is PROCESSING and d.processing_on is not None:
                state.revoke(d.processing_on, d)
                recs[d] = WAITING


def _count_missing_deps(ts: TaskRecord, recs: Recs) -> bool:
    """Set ``ts.n_waiting``; recommend released deps to waiting.  False if a
    dep has failed (``ts`` should fail too)."""
    n = 0
    ok = True
    for dep in ts.deps:
        st = dep.state
        if st is MEMORY:
            continue
        n += 1
        if st is ERRED:
            ok = False
            ts.exception = dep.exception
            ts.erred_on = dep.erred_on or dep.key
        elif st is RELEASED:
            recs[dep] = WAITING
    ts.n_waiting = n
    return ok


# ---------------------------------------------------------------------------
# the transitions
# ---------------------------------------------------------------------------


def released_waiting(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if _unneeded(ts):
        # a stale recommendation: the dependent that asked for it has erred
        # or been released in the same batch (say, a retried task whose other
        # dependency is still erred), and nobody else needs it
        _maybe_forget(state, ts, recs)
        return
    if ts.func is None:
        # scattered data that is gone: nothing can rebuild it
        ts.exception = state.lost_data_exception(ts.key)
        recs[ts] = ERRED
        return
    if ts in state.unknown_deps and not state.resolve_unknown_deps(ts):
        # submitted with inputs the scheduler had forgotten: run now (first
        # time, retry or lineage) it would lack them
        recs[ts] = ERRED
        return
    ts.state = WAITING
    for dep in ts.deps:
        dep.n_waiters += 1
    if not _count_missing_deps(ts, recs):
        recs[ts] = ERRED
    elif ts.n_waiting == 0 or placement.pipeline_worker(ts) is not None:
        recs[ts] = PROCESSING


def waiting_processing(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.n_waiting:
        # inputs still running: pipelined onto their worker, if still possible
        target = placement.pipeline_worker(ts)
        if target is not None:
            state.assign(ts, target)
        return
    choice = placement.choose_worker(state, ts)
    if choice is placement.QUEUE:
        ts.state = QUEUED
        heapq.heappush(state.queued, (ts.priority, id(ts), ts))
    elif choice is None:
        ts.state = NO_WORKER
        state.unrunnable.add(ts)
    else:
        assert isinstance(choice, WorkerRecord)
        state.assign(ts, choice)


def queued_processing(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    # only reached through SchedulerState.fill_worker, which picks the worker
    raise AssertionError("queued tasks are assigned by fill_worker")


def no_worker_processing(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    choice = placement.choose_worker(state, ts)
    if isinstance(choice, WorkerRecord):
        state.unrunnable.discard(ts)
        state.assign(ts, choice)


def processing_memory(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    # fields (nbytes, value, who_has) were set by SchedulerState.task_finished
    leave_worker(state, ts)
    ts.state = MEMORY
    ts.suspicious = 0
    _becomes_available(state, ts, recs)
    _deps_lose_waiter(ts, recs)


def _becomes_available(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.dependents:
        for d in by_priority(ts.dependents):
            if d.state is WAITING:
                d.n_waiting -= 1
                if d.n_waiting == 0:
                    recs[d] = PROCESSING
    state.report_done(ts)
    if ts.n_wanted == 0 and ts.n_waiters == 0:
        recs[ts] = RELEASED


def waiting_memory(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """A result arrived for a task we had not sent anywhere yet (a duplicate
    run, or scattered data under the same key)."""
    if ts.state is QUEUED:
        pass  # lazily dropped from the heap
    state.unrunnable.discard(ts)
    leave_worker(state, ts)
    ts.state = MEMORY
    _becomes_available(state, ts, recs)
    _deps_lose_waiter(ts, recs)


def released_memory(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """Data appeared (scattered) for a key with nothing to run."""
    ts.state = MEMORY
    _becomes_available(state, ts, recs)


def erred_memory(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """The same data was scattered again under the key of a lost copy (the
    holders were added by ``SchedulerState.data_scattered``)."""
    ts.exception = None
    ts.erred_on = ""
    ts.state = MEMORY
    _becomes_available(state, ts, recs)


def processing_erred(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    leave_worker(state, ts)
    _become_erred(state, ts, recs)


def waiting_erred(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    state.unrunnable.discard(ts)
    _become_erred(state, ts, recs)


def _become_erred(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    was_runnable = ts.state in RUNNABLE
    ts.state = ERRED
    if was_runnable:
        _deps_lose_waiter(ts, recs)
    if ts.dependents:
        for d in by_priority(ts.dependents):
            if d.state in RUNNABLE:
                if d.state is PROCESSING and d.processing_on is not None:
                    state.revoke(d.processing_on, d)  # pipelined on ts: drop it there
                d.exception = ts.exception
                d.erred_on = ts.erred_on or ts.key
                recs[d] = ERRED
    state.report_erred(ts)
    if ts.n_wanted == 0 and ts.n_waiters == 0:
        recs[ts] = RELEASED


def released_erred(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    _become_erred(state, ts, recs)


def erred_waiting(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    ts.exception = None
    ts.erred_on = ""
    ts.state = RELEASED
    released_waiting(state, ts, recs)


def processing_waiting(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """Run it again: a retry after a failure, or its worker died or gave it back.
    Whoever recommends this has made sure the old worker dropped the task."""
    if _unneeded(ts):
        if ts.state is PROCESSING:
            processing_released(state, ts, recs)
        else:
            waiting_released(state, ts, recs)
        return
    leave_worker(state, ts)
    _revoke_pipelined(state, ts, recs)
    state.unrunnable.discard(ts)
    ts.state = WAITING
    if not _count_missing_deps(ts, recs):
        recs[ts] = ERRED
    elif ts.n_waiting == 0 or placement.pipeline_worker(ts) is not None:
        recs[ts] = PROCESSING


def memory_waiting(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    """Every copy of the result was lost: compute it again from its lineage."""
    for w in ts.who_has:
        w.has_what.discard(ts)
        w.nbytes -= ts.nbytes
    ts.who_has = ()
    ts.value = None
    state.report_lost(ts)
    ts.state = RELEASED
    if ts.dependents:
        for d in by_priority(ts.dependents):
            if d.state is PROCESSING:
                # its worker may be stuck fetching the lost data: take it back
                runner = d.processing_on
                if runner is not None:
                    state.revoke(runner, d)
                recs[d] = WAITING
            elif d.state is NO_WORKER:
                recs[d] = WAITING
            elif d.state is WAITING:
                d.n_waiting += 1
    released_waiting(state, ts, recs)


def processing_released(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.n_wanted or ts.n_waiters:
        # still needed by someone else (a stale recommendation): it goes on
        # running, unless its run is gone (taken back, or its worker died),
        # whose recommendation to run again this one overwrote
        w = ts.processing_on
        if w is None or w.status == "closed":
            recs[ts] = WAITING
        return
    if ts.processing_on is not None:
        state.revoke(ts.processing_on, ts)
    leave_worker(state, ts)  # revoke() left it already, unless its worker died
    ts.state = RELEASED
    _deps_lose_waiter(ts, recs)
    _maybe_forget(state, ts, recs)


def waiting_released(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    # also queued and no-worker: a queued entry is dropped lazily from the heap
    if ts.n_wanted or ts.n_waiters:
        return
    state.unrunnable.discard(ts)
    ts.state = RELEASED
    _deps_lose_waiter(ts, recs)
    _maybe_forget(state, ts, recs)


def memory_released(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.n_wanted or ts.n_waiters:
        return  # needed again since this was recommended
    key = ts.key
    for w in ts.who_has:
        w.has_what.discard(ts)
        w.nbytes -= ts.nbytes
        state.send_worker(w, m.FreeKeys([key]))
    ts.who_has = ()
    ts.value = None
    ts.state = RELEASED
    _maybe_forget(state, ts, recs)


def erred_released(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.n_wanted or ts.n_waiters:
        return
    ts.exception = None
    ts.erred_on = ""
    ts.state = RELEASED
    _maybe_forget(state, ts, recs)


def released_forgotten(state: SchedulerState, ts: TaskRecord, recs: Recs) -> None:
    if ts.n_wanted or ts.dependents:
        return
    ts.state = FORGOTTEN
    state.forget(ts)
    for dep in ts.deps:
        deps_of = dep.dependents
        if deps_of is not None:
            deps_of.discard(ts)
            if not deps_of:
                dep.dependents = None
        if dep.n_wanted == 0 and dep.n_waiters == 0 and not dep.dependents:
            recs[dep] = FORGOTTEN if dep.state is RELEASED else RELEASED


TRANSITIONS: dict[tuple[SchedulerTaskStatus, SchedulerTaskStatus], Transition] = {
    (RELEASED, WAITING): released_waiting,
    (RELEASED, ERRED): released_erred,
    (RELEASED, FORGOTTEN): released_forgotten,
    (RELEASED, MEMORY): released_memory,
    (WAITING, PROCESSING): waiting_processing,
    (WAITING, MEMORY): waiting_memory,
    (WAITING, ERRED): waiting_erred,
    (WAITING, RELEASED): waiting_released,
    (QUEUED, MEMORY): waiting_memory,
    (QUEUED, ERRED): waiting_erred,
    (QUEUED, RELEASED): waiting_released,
    (NO_WORKER, PROCESSING): no_worker_processing,
    (NO_WORKER, MEMORY): waiting_memory,
    (NO_WORKER, ERRED): waiting_erred,
    (NO_WORKER, RELEASED): waiting_released,
    (NO_WORKER, WAITING): processing_waiting,
    (PROCESSING, MEMORY): processing_memory,
    (PROCESSING, ERRED): processing_erred,
    (PROCESSING, RELEASED): processing_released,
    (PROCESSING, WAITING): processing_waiting,
    (MEMORY, RELEASED): memory_released,
    (MEMORY, WAITING): memory_waiting,
    (ERRED, RELEASED): erred_released,
    (ERRED, MEMORY): erred_memory,
    (ERRED, WAITING): erred_waiting,
}

#: pairs that are not a single step but harmless: e.g. a task recommended to
#: be released twice, or to be forgotten while something still refers to it
#: (the guard inside the transition makes it a no-op)
ROUTES: dict[tuple[SchedulerTaskStatus, SchedulerTaskStatus], SchedulerTaskStatus] = {
    (MEMORY, FORGOTTEN): RELEASED,
    (ERRED, FORGOTTEN): RELEASED,
    (WAITING, FORGOTTEN): RELEASED,
    (QUEUED, FORGOTTEN): RELEASED,
    (NO_WORKER, FORGOTTEN): RELEASED,
    (PROCESSING, FORGOTTEN): RELEASED,
}
