"""Where a ready task runs.  PURE policy: reads records, changes nothing.

Rules:
1. Restricted tasks (``workers=``, ``resources=``) go to the best allowed
   worker now, or wait as ``no-worker`` when none is allowed.
2. Root tasks (no dependencies) are queued on the scheduler unless some worker
   has a free slot, so a million-task ``map`` does not flood the workers'
   memory.  A worker's slots are its threads plus enough extra tasks to cover
   a few milliseconds of work: many for tiny tasks (so a worker never idles
   waiting for the next message), one per thread for long ones.
3. Tasks with dependencies go where the objective is smallest: estimated
   seconds of work already queued per thread, plus the seconds needed to move
   the input bytes the worker does not have yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from shoal.scheduler.records import MEMORY, PROCESSING, Restrictions, TaskRecord, WorkerRecord

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

#: returned by choose_worker: wait in the scheduler's queue for a free slot
QUEUE: Final = "queue"

# The policy's settings (scheduler.bandwidth, scheduler.placement.*): these
# defaults, until configure() sets this process's (a scheduler server does
# when it is made).  Read as module attributes, never imported by value.

#: bytes per second assumed for moving data between workers
BANDWIDTH = 500e6
#: seconds of queued work a worker should hold beyond one task per thread
TARGET_BACKLOG = 0.005
#: at most this many extra tasks per thread
MAX_EXTRA_PER_THREAD = 200
#: small inputs: any worker is a candidate, not only the holders
SMALL_INPUT_BYTES = 1_000_000


def configure(bandwidth: float, target_backlog: float, max_extra_per_thread: int,
              small_input_bytes: int) -> None:
    """Set this process's placement settings."""
    global BANDWIDTH, TARGET_BACKLOG, MAX_EXTRA_PER_THREAD, SMALL_INPUT_BYTES
    if bandwidth <= 0 or target_backlog < 0 or max_extra_per_thread < 0 or small_input_bytes < 0:
        raise ValueError("placement settings must be positive (bandwidth) or at least 0")
    BANDWIDTH = float(bandwidth)
    TARGET_BACKLOG = float(target_backlog)
    MAX_EXTRA_PER_THREAD = int(max_extra_per_thread)
    SMALL_INPUT_BYTES = int(small_input_bytes)


def worker_slots(w: WorkerRecord, task_duration: float) -> int:
    """How many tasks ``w`` may hold at once, for tasks of this duration."""
    if task_duration <= 0:
        extra = MAX_EXTRA_PER_THREAD
    else:
        extra = min(MAX_EXTRA_PER_THREAD, max(1, math.ceil(TARGET_BACKLOG / task_duration)))
    return w.nthreads * (1 + extra)


def matches(w: WorkerRecord, r: Restrictions) -> bool:
    if r.workers is not None and not (
        w.address in r.workers or w.name in r.workers or w.host in r.workers
    ):
        return False
    if r.resources:
        for name, amount in r.resources.items():
            if w.resources.get(name, 0) < amount:
                return False
    return True


def valid_workers(state: SchedulerState, r: Restrictions) -> list[WorkerRecord]:
    running = [w for w in state.workers.values() if w.status == "running"]
    valid = [w for w in running if matches(w, r)]
    if not valid and r.loose and r.workers is not None:
        # allow_other_workers loosens the worker list, never the resources
        loosened = Restrictions(None, False, r.resources)
        valid = [w for w in running if matches(w, loosened)]
    return valid


def _objective(w: WorkerRecord, ts: TaskRecord) -> tuple[float, int]:
    missing = 0
    for dep in ts.deps:
        if w not in dep.who_has and dep.value is None:
            missing += dep.nbytes
    return (w.occupancy / w.nthreads + missing / BANDWIDTH, w.busy)


def best(ts: TaskRecord, candidates: Iterable[WorkerRecord]) -> WorkerRecord | None:
    best_w: WorkerRecord | None = None
    best_score: tuple[float, int] | None = None
    for w in candidates:
        score = _objective(w, ts)
        if best_score is None or score < best_score:
            best_w, best_score = w, score
    return best_w


def pipeline_worker(ts: TaskRecord) -> WorkerRecord | None:
    """The worker to send ``ts`` to *before* its inputs are done, or None.

    When every input not yet in memory is running on one worker and has no
    other dependent (a chain), ``ts`` goes there at once and starts as soon
    as they end, without a round trip through the scheduler per link.  Not
    for fan-outs: the many dependents of one task are spread over the
    workers when it ends, as usual.  Tasks with restrictions wait as usual."""
    if ts.restrictions is not None:
        return None
    target: WorkerRecord | None = None
    for dep in ts.deps:
        st = dep.state
        if st is MEMORY:
            continue
        if st is not PROCESSING or (dep.dependents is not None and len(dep.dependents) > 1):
            return None
        if target is None:
            target = dep.processing_on
        elif dep.processing_on is not target:
            return None
    if target is None or target.status != "running":
        return None
    return target


def choose_worker(state: SchedulerState, ts: TaskRecord) -> WorkerRecord | str | None:
    """A worker, ``QUEUE`` (wait for a free slot) or ``None`` (no worker may run it)."""
    if state.steal_targets:
        thief = state.steal_targets.pop(ts, None)
        if thief is not None and thief.status == "running":
            return thief  # given back by a busy worker for this idle one
    r = ts.restrictions
    if r is not None and (r.workers is not None or r.resources):
        return best(ts, valid_workers(state, r))
    if not ts.deps:
        if state.has_queued():
            # others already wait for a slot (the end of the batch hands out
            # any that freed): join them rather than scan for room per task
            return QUEUE
        return least_busy_with_room(state, state.expected_duration(ts.prefix)) or QUEUE
    running = state.running_workers()
    if not running:
        return None
    candidates: dict[WorkerRecord, None] = {}  # ordered: ties go the same way every time
    nbytes = 0
    for dep in ts.deps:
        nbytes += dep.nbytes
        for w in dep.who_has:
            candidates[w] = None
    if nbytes < SMALL_INPUT_BYTES or not candidates:
        return best(ts, running)
    return best(ts, (w for w in candidates if w.status == "running")) or best(ts, running)


def least_busy_with_room(state: SchedulerState, duration: float) -> WorkerRecord | None:
    chosen: WorkerRecord | None = None
    chosen_load = 0.0
    for w in state.running_workers():
        n = w.busy
        if n >= worker_slots(w, duration):
            continue
        load = n / w.nthreads
        if chosen is None or load < chosen_load:
            chosen, chosen_load = w, load
    return chosen
