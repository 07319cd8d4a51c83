"""What cluster control changes in the scheduler's state.  PURE.

Functions on a ``SchedulerState`` (kept out of ``state.py``, which holds the
task life), each one event with its own stimulus and end-of-event checks:

* ``set_retiring``: a worker retires (``retire_workers``) or stays after all;
* ``set_paused``: a worker paused by its memory, or resumed;
* ``drop_replicas``: a worker gives up copies (``rebalance``, ``replicate``);
* ``release_all``: every task is forgotten (``client.restart``).

Task states still change only through the transitions table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from shoal.protocol import messages as m
from shoal.scheduler.records import MEMORY, PROCESSING, WorkerRecord
from shoal.scheduler.transitions import Recs, by_priority

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState


def set_retiring(state: SchedulerState, address: str, retiring: bool, now: float = 0.0) -> None:
    """Mark a worker retiring (``closing_gracefully``: it gets no new tasks,
    and its leaving is not held against the tasks it runs) or, with
    ``retiring=False``, running again (a retirement given up)."""
    w = state.workers[address]
    state._begin(f"retiring-{address}" if retiring else f"not-retiring-{address}", now)
    w.status = "closing_gracefully" if retiring else ("paused" if w.memory_paused else "running")
    state._running = None
    if not retiring:
        if state.unrunnable:  # popitem() takes the last first: the most urgent last
            ordered = sorted(state.unrunnable, key=lambda ts: ts.priority, reverse=True)
            state.transitions({ts: PROCESSING for ts in ordered})
        if w.status == "running":
            state.fill_worker(w)
    state._finish()


def set_paused(state: SchedulerState, w: WorkerRecord, paused: bool) -> None:
    """The worker paused (its memory passed the pause threshold: it gets no
    new tasks) or resumed.  A retiring worker stays retiring (and pauses
    or runs when its retirement is given up, as it last said)."""
    w.memory_paused = paused
    if paused and w.status == "running":
        w.status = "paused"
        state._running = None
    elif not paused and w.status == "paused":
        w.status = "running"
        state._running = None
        if state.unrunnable:  # popitem() takes the last first: the most urgent last
            ordered = sorted(state.unrunnable, key=lambda ts: ts.priority, reverse=True)
            state.transitions({ts: PROCESSING for ts in ordered})


def drop_replicas(state: SchedulerState, address: str, keys: Iterable[str], now: float = 0.0
                  ) -> list[str]:
    """The worker at ``address`` is to drop its copies of ``keys`` (moved
    elsewhere by ``rebalance``, trimmed by ``replicate``); it is told so.  A
    copy that is the last one on any worker is kept.  Returns the keys
    dropped."""
    w = state.workers.get(address)
    if w is None:
        return []
    state._begin(f"drop-replicas-{address}", now)
    dropped = []
    for key in keys:
        ts = state.tasks.get(key)
        if ts is None or ts.state is not MEMORY or w not in ts.who_has or len(ts.who_has) < 2:
            continue
        ts.who_has = tuple(x for x in ts.who_has if x is not w)
        w.has_what.discard(ts)
        w.nbytes -= ts.nbytes
        dropped.append(key)
    if dropped:
        state.send_worker(w, m.FreeKeys(dropped))
    state._finish()
    return dropped


def release_all(state: SchedulerState, reason: str, now: float = 0.0) -> None:
    """Forget every task (``client.restart``): every client hears that its
    keys are cancelled, with ``reason``, and drops its claims; the usual
    transitions then release everything (workers are told to drop their data
    and abandon their runs) and forget every record."""
    state._begin("restart", now)
    recs: Recs = {}
    for c in state.clients.values():
        if not c.wants:
            continue
        ordered = by_priority(c.wants)
        state.send_client(c.client_id, m.TasksCancelled([ts.key for ts in ordered], reason))
        for ts in ordered:
            state._unwant(ts, recs)
        c.wants.clear()
    state.transitions(recs)
    state._finish()
