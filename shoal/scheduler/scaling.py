"""How many workers the current work wants: the number behind adaptive
scaling (``cluster.adapt()``), dask's ``Scheduler.adaptive_target``.
PURE: reads the scheduler's records, changes nothing.

Rules (dask's, so that clusters grow and shrink as dask users expect):
1. CPU: the seconds of work in sight (what workers are running or hold, plus
   the tasks waiting for a slot: queued root tasks and tasks no worker can
   run yet), divided by ``target_duration``, the time the user would like
   the whole backlog to take.  Queued tasks are costed by the measured
   duration of their function (``SchedulerState.expected_duration``); past
   100 of them, the first 100 are costed and the sum scaled up.
2. Never more workers than tasks: a few long tasks do not ask for many
   workers.
3. The count is of threads, turned into workers by the cluster's average
   threads per worker.
4. Memory: when the results held fill more than 60% of the workers' memory
   limits, twice the current workers.
5. Work with no worker at all wants at least one.
6. Below the current count, the target is what stays after closing the
   workers that could retire cheaply (``replicas.workers_to_close``: idle,
   holding little), so that idle workers holding results everyone still
   needs are not counted as spare.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shoal.scheduler.records import QUEUED, TaskRecord
from shoal.scheduler.replicas import workers_to_close

if TYPE_CHECKING:
    from shoal.scheduler.state import SchedulerState

#: worker attributes ``workers_to_close(attribute=...)`` may return
ATTRIBUTES = frozenset({"address", "name", "host"})
#: tasks waiting for a slot costed one by one; beyond, the sum is scaled
SAMPLE = 100
#: the fraction of the workers' memory limits past which memory asks for more workers
MEMORY_FRACTION = 0.6


def ready_tasks(state: SchedulerState) -> list[TaskRecord]:
    """Tasks waiting for a slot: queued root tasks (stale heap entries left
    out), then tasks no current worker can run."""
    queued = [ts for _, _, ts in state.queued if ts.state is QUEUED]
    return queued + sorted(state.unrunnable, key=lambda ts: ts.priority)


def _first(tasks: Iterable[TaskRecord], n: int) -> list[TaskRecord]:
    out: list[TaskRecord] = []
    for ts in tasks:
        if len(out) >= n:
            break
        out.append(ts)
    return out


def adaptive_target(state: SchedulerState, target_duration: float) -> int:
    """The number of workers the current work wants (see the rules above)."""
    if target_duration <= 0:
        raise ValueError(f"target_duration must be positive, got {target_duration!r}")
    workers = list(state.workers.values())
    ready = ready_tasks(state)
    tasks_ready = len(ready)
    queued_seconds = sum(state.expected_duration(ts.prefix) for ts in _first(ready, SAMPLE))
    if tasks_ready > SAMPLE:
        queued_seconds *= tasks_ready / SAMPLE
    occupancy = sum(w.occupancy for w in workers)
    cpu = math.ceil((occupancy + queued_seconds) / target_duration)
    # rule 2: no more threads than tasks in sight
    for w in workers:
        if tasks_ready > cpu:
            break
        tasks_ready += len(w.processing)
    else:
        cpu = min(tasks_ready, cpu)
    if workers:
        threads = sum(w.nthreads for w in workers)
        cpu = math.ceil(cpu / threads * len(workers)) if threads else cpu
    elif ready:
        cpu = max(1, cpu)
    limit = sum(w.memory_limit for w in workers)
    used = sum(w.nbytes for w in workers)
    memory = 2 * len(workers) if limit > 0 and used > MEMORY_FRACTION * limit else 0
    target = max(memory, cpu)
    if target >= len(workers):
        return target
    return len(workers) - len(workers_to_close(workers))


def close_candidates(state: SchedulerState, memory_ratio: float | None = None,
                     n: int | None = None, key: Any = None, minimum: int | None = None,
                     target: int | None = None, attribute: str = "address") -> list[Any]:
    """dask's ``workers_to_close``: the ``attribute`` of the workers that
    could retire cheaply (``replicas.workers_to_close``)."""
    if key is not None:
        raise NotImplementedError(
            "workers_to_close(key=...): the grouping function would have to run on the "
            "scheduler, which never runs user code")
    if attribute not in ATTRIBUTES:
        raise ValueError(f"workers_to_close(attribute={attribute!r}): one of {sorted(ATTRIBUTES)}")
    chosen = workers_to_close(list(state.workers.values()), n, target, minimum, memory_ratio)
    return [getattr(w, attribute) for w in chosen]
