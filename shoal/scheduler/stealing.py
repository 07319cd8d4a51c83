"""Which tasks idle workers take from busy ones: work stealing.  PURE policy.

Reads the scheduler's records, changes nothing.  ``work_stealing.py`` runs
it every ``scheduler.work-stealing-interval`` and carries the steals out.

Root tasks wait in the scheduler's queue and go to whichever worker has a
free slot, so idle workers are fed from there first.  What the queue cannot
move is work already handed to a worker: tasks placed next to their input
data, tasks of a worker that paused (memory), tasks that turned out longer
than estimated.  Rules:

1. A *thief* is a running worker with idle threads; a *victim* holds more
   tasks than it has threads (or is paused: none of its queued tasks will
   start soon).
2. The least urgent of a victim's surplus tasks go first (it would run them
   last), to the thief with the most idle threads that may run them
   (restrictions are honoured; seceded and actor tasks never move).
3. A task is worth moving when moving its inputs costs less than running it
   (inputs the thief lacks, at ``placement.BANDWIDTH``, against its expected
   duration); tasks shorter than ``MIN_DURATION`` are not worth the round
   trip, unless their worker is paused.
4. The victim has the last word: it gives a task back only if it has not
   started it (``StealRequest``/``StealResponse``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from shoal.scheduler import placement
from shoal.scheduler.placement import matches
from shoal.scheduler.records import TaskRecord, WorkerRecord

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

#: expected seconds below which a task is not moved from a running worker
MIN_DURATION = 0.005
#: at most this many steals asked for per round
MAX_PER_ROUND = 1000


def thieves(state: SchedulerState) -> dict[WorkerRecord, int]:
    """Running workers with idle threads -> how many."""
    out = {}
    for w in state.running_workers():
        idle = w.nthreads - w.busy
        if idle > 0:
            out[w] = idle
    return out


def surplus(w: WorkerRecord) -> int:
    """How many of ``w``'s tasks could go elsewhere."""
    if w.status == "paused":
        return w.busy
    if w.status != "running":
        return 0
    return max(0, w.busy - w.nthreads)


def transfer_cost(ts: TaskRecord, thief: WorkerRecord) -> float:
    """Seconds to bring ``ts``'s inputs to ``thief``."""
    missing = 0
    for dep in ts.deps:
        if thief not in dep.who_has and dep.value is None:
            missing += dep.nbytes
    return missing / placement.BANDWIDTH


def movable(ts: TaskRecord, victim: WorkerRecord, thief: WorkerRecord) -> bool:
    r = ts.restrictions
    if r is not None and (r.actor or not matches(thief, r)):
        return False
    if ts in victim.long_running:
        return False
    duration = victim.processing.get(ts, 0.0)
    if victim.status != "paused" and duration < MIN_DURATION:
        return False
    return transfer_cost(ts, thief) <= max(duration, MIN_DURATION if victim.status == "paused" else 0.0)


def plan(state: SchedulerState, asked: Collection[str] = ()) -> list[tuple[TaskRecord, WorkerRecord,
                                                                          WorkerRecord]]:
    """``(task, victim, thief)`` steals to ask for now; ``asked``: keys
    whose steal is already under way (left alone)."""
    idle = thieves(state)
    if not idle:
        return []
    victims = sorted(((surplus(w), w) for w in state.workers.values() if w not in idle),
                     key=lambda pair: -pair[0])
    steals: list[tuple[TaskRecord, WorkerRecord, WorkerRecord]] = []
    for extra, victim in victims:
        if extra <= 0 or not idle:
            break
        # least urgent first: the largest priority number runs last
        candidates = sorted(victim.processing, key=lambda t: t.priority, reverse=True)
        for ts in candidates:
            if extra <= 0 or not idle or len(steals) >= MAX_PER_ROUND:
                break
            if ts.key in asked:
                continue
            thief = max((w for w in idle if movable(ts, victim, w)), key=lambda w: idle[w],
                        default=None)
            if thief is None:
                continue
            steals.append((ts, victim, thief))
            extra -= 1
            idle[thief] -= 1
            if not idle[thief]:
                del idle[thief]
    return steals


__all__ = ["MIN_DURATION", "plan", "surplus", "thieves", "transfer_cost"]
