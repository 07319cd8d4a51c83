"""Where data is: scattered values, copies a worker fetched, data a worker
or client found missing.  PURE.

Functions on a ``SchedulerState`` (kept out of ``state.py``, which holds the
task life): ``handle_client``/``handle_worker`` call them for
``DataScattered``, ``ReplicasAdded`` and ``DataMissing``.  Task states change
only through the transitions table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.protocol import messages as m
from shoal.scheduler.records import (
    ERRED,
    MEMORY,
    PROCESSING,
    RELEASED,
    RUNNABLE,
    WAITING,
    ClientRecord,
    TaskRecord,
    WorkerRecord,
)
from shoal.scheduler.transitions import Recs, by_priority

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState


def data_scattered(state: SchedulerState, c: ClientRecord, keys: list[m.ScatteredKey]) -> None:
    for sk in keys:
        holders = [state.workers[a] for a in sk.workers if a in state.workers]
        ts = state.tasks.get(sk.key)
        if ts is None:
            state._seq += 1
            ts = TaskRecord(sk.key, None, None, state._seq)
            state.tasks[sk.key] = ts
        state._want(c, ts)
        if not holders:
            # every worker it went to has died since; but another client
            # may have scattered the same data (same key) elsewhere
            if ts.state is MEMORY:
                pass
            elif ts.state is ERRED:
                state._report_current(c, ts)  # no transition would tell this client
            else:
                ts.exception = state.lost_data_exception(sk.key)
                state.transitions({ts: ERRED})
            continue
        ts.nbytes, ts.type_name = sk.nbytes, sk.type_name
        for w in holders:
            state._add_replica(ts, w)
        # ERRED too: the same data scattered again after its copies were lost
        if ts.state is RELEASED or ts.state is ERRED or ts.state in RUNNABLE:
            state.transitions({ts: MEMORY})


def replicas_added(state: SchedulerState, w: WorkerRecord, msg: m.ReplicasAdded) -> None:
    unwanted = []
    for key, nbytes in zip(msg.keys, msg.nbytes):
        ts = state.tasks.get(key)
        if ts is not None and ts.state is PROCESSING and ts.processing_on is w:
            # its copies were lost meanwhile and w was asked to compute
            # it: w answers that with this copy; freeing it would leave w
            # reporting a result it has just dropped
            continue
        if ts is None or ts.state is not MEMORY:
            unwanted.append(key)
        else:
            if not ts.nbytes:
                ts.nbytes = nbytes
            state._add_replica(ts, w)
    if unwanted:
        state.send_worker(w, m.FreeKeys(unwanted))


def data_missing(state: SchedulerState, w: WorkerRecord | None, msg: m.DataMissing) -> None:
    """A worker (``w``) or a client (``None``) asked ``msg.workers`` for
    ``msg.key`` and they did not have it: they are no holders."""
    ts = state.tasks.get(msg.key)
    if ts is None:
        return
    for address in msg.workers:
        holder = state.workers.get(address)
        if holder is not None and holder in ts.who_has:
            ts.who_has = tuple(x for x in ts.who_has if x is not holder)
            holder.has_what.discard(ts)
            holder.nbytes -= ts.nbytes
    recs: Recs = {}
    if ts.dependents and w is not None:
        for d in by_priority(ts.dependents):
            if d.state is PROCESSING and d.processing_on is w:
                state.revoke(w, d)
                recs[d] = WAITING
    if ts.state is MEMORY and not ts.who_has and ts.value is None:
        recs[ts] = WAITING
    state.transitions(recs)
