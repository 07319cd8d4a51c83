"""Adaptive scaling in the pure parts: how many workers the work wants
(``shoal.scheduler.scaling.adaptive_target``) and the scale-up/scale-down
decision (``shoal.deploy.adaptive_core.AdaptiveCore``).  Each docstring
states the real-life scenario."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from shoal.deploy.adaptive_core import AdaptiveCore
from shoal.scheduler.records import TaskRecord
from shoal.scheduler.scaling import adaptive_target, close_candidates, ready_tasks
from tests.unit.test_scheduler_state import finished, make_state, spec, submit

# ---------------------------------------------------------------------------
# adaptive_target
# ---------------------------------------------------------------------------


def test_work_with_no_worker_asks_for_workers_by_its_duration_but_no_more_than_tasks() -> None:
    """A cluster scaled to zero gets ten tasks of a function never seen
    before (costed 0.5 s each).  Wanting them done in 0.1 s asks for a worker
    per task (never more); wanting them done in 5 s asks for one worker."""
    s = make_state(0)
    submit(s, "c", *(spec(f"t-{i}") for i in range(10)))
    assert len(ready_tasks(s)) == 10
    assert adaptive_target(s, 0.1) == 10
    assert adaptive_target(s, 5) == 1
    assert adaptive_target(s, 1000) == 1  # some work and no worker: at least one


def test_a_backlog_asks_for_threads_turned_into_workers() -> None:
    """One worker with two threads holds four of 100 queued tasks (0.5 s
    each: 50 s of work).  To finish in 1 s the work wants 50 threads: 25
    two-thread workers; in 5 s, 10 threads: 5 workers; in 100 s, one."""
    s = make_state(1, nthreads=2)
    submit(s, "c", *(spec(f"t-{i}") for i in range(100)))
    assert len(s.workers["w0"].processing) + len(ready_tasks(s)) == 100
    assert adaptive_target(s, 1) == 25
    assert adaptive_target(s, 5) == 5
    assert adaptive_target(s, 100) == 1


def test_an_idle_cluster_holding_nothing_wants_no_worker() -> None:
    """Two workers, no work, no data: every worker could go."""
    s = make_state(2)
    assert adaptive_target(s, 5) == 0


def test_idle_workers_holding_results_are_kept_while_memory_is_needed() -> None:
    """Two idle workers with 1000-byte limits; one holds a 400-byte result.
    The default rule keeps twice the data held in memory limits: the empty
    worker may go (1000 bytes of limits stay for 400 of data), the other
    must stay: the target is 1.  Were 1000 more bytes held (70% of the
    limits, past 60%), the memory rule would ask for twice the workers."""
    s = make_state(2)
    for w in s.workers.values():
        w.memory_limit = 1000
    submit(s, "c", spec("a-1"))
    finished(s, "w0", "a-1")
    s.tasks["a-1"].nbytes = s.workers["w0"].nbytes = 400
    assert adaptive_target(s, 5) == 1
    s.workers["w1"].nbytes = 1000
    assert adaptive_target(s, 5) == 4


def test_a_target_duration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="target_duration"):
        adaptive_target(make_state(1), 0)


def test_stale_queue_entries_are_not_counted() -> None:
    """The queue is a heap whose entries stay behind when a task leaves it
    another way (cancelled, assigned): only tasks still queued count."""
    s = make_state(1)
    submit(s, "c", *(spec(f"t-{i}") for i in range(5)))
    ghost = TaskRecord("ghost-1", b"f", b"", 0)  # released: not queued any more
    s.queued.append((99, 99, ghost))
    assert ghost not in ready_tasks(s)


def test_close_candidates_by_name_and_refusals() -> None:
    """What Adaptive asks: the names of the workers that could go to reach
    a target; a grouping function (dask's ``key=``) would have to run on
    the scheduler and is refused, as is an attribute workers lack."""
    s = make_state(3)
    submit(s, "c", spec("busy-1"))
    assert sorted(close_candidates(s, target=1, attribute="name")) == ["w1", "w2"]
    assert close_candidates(s, n=1) == ["w2"]
    with pytest.raises(NotImplementedError, match="key"):
        close_candidates(s, key=len)
    with pytest.raises(ValueError, match="attribute"):
        close_candidates(s, attribute="pid")


# ---------------------------------------------------------------------------
# AdaptiveCore: the decision
# ---------------------------------------------------------------------------


class SetCluster(AdaptiveCore):
    """A cluster described by three sets of names and a target, recording
    what it was asked to do."""

    def __init__(self, wanted: int, workers: set[str], arrived: set[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wanted = wanted
        self.workers = set(workers)
        self.arrived = set(workers if arrived is None else arrived)
        self.calls: list[tuple[str, Any]] = []

    @property
    def plan(self) -> set[str]:
        return self.workers

    @property
    def requested(self) -> set[str]:
        return self.workers

    @property
    def observed(self) -> set[str]:
        return self.arrived

    async def target(self) -> int:
        return self.wanted

    async def scale_up(self, n: int) -> None:
        self.calls.append(("up", n))
        self.workers |= {f"new-{i}" for i in range(n - len(self.workers))}

    async def scale_down(self, workers: list[Any]) -> None:
        self.calls.append(("down", workers))
        self.workers -= set(workers)
        self.arrived -= set(workers)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_scale_up_at_once_within_the_maximum() -> None:
    """Work wants 10 workers; the cluster allows 4: one round scales to 4."""
    c = SetCluster(10, {"a"}, maximum=4)
    run(c.adapt())
    assert c.calls == [("up", 4)]
    assert c.log[-1][1] == {"status": "up", "n": 4}


def test_never_below_the_minimum() -> None:
    """No work at all, minimum 2: two workers stay, round after round."""
    c = SetCluster(0, {"a", "b", "c"}, minimum=2, wait_count=1)
    for _ in range(3):
        run(c.adapt())
    assert len(c.workers) == 2
    assert [kind for kind, _ in c.calls] == ["down"]


def test_scale_down_only_after_wait_count_rounds_in_a_row() -> None:
    """A lull: the work wants one worker of three for two rounds, then
    three again (a new burst), then one for three rounds.  With wait_count 3
    nothing is closed during the short lull; after three rounds in a row
    two workers are closed."""
    c = SetCluster(1, {"a", "b", "c"}, wait_count=3)
    run(c.adapt())
    run(c.adapt())
    assert c.calls == []
    c.wanted = 3
    run(c.adapt())  # the counts start again
    assert c.close_counts == {}
    c.wanted = 1
    for _ in range(2):
        run(c.adapt())
    assert c.calls == []
    run(c.adapt())
    assert c.calls == [("down", ["b", "c"])]  # workers_to_close: past the target, by name
    assert c.workers == {"a"}


def test_workers_not_arrived_yet_are_dropped_first() -> None:
    """Three workers asked for, one still queued in the batch system; the
    work wants two: the one that never arrived goes, not a working one."""
    c = SetCluster(2, {"a", "b", "queued"}, arrived={"a", "b"}, wait_count=1)
    run(c.adapt())
    assert c.calls == [("down", ["queued"])]


def test_a_round_while_one_runs_does_nothing() -> None:
    """A slow scale-up (jobs being submitted) overlaps the next tick: the
    second round returns without deciding anything."""

    class Slow(SetCluster):
        async def scale_up(self, n: int) -> None:
            await asyncio.sleep(0.05)
            await super().scale_up(n)

    c = Slow(3, {"a"})

    async def two_rounds() -> None:
        await asyncio.gather(c.adapt(), c.adapt())

    run(two_rounds())
    assert c.calls == [("up", 3)]


@pytest.mark.parametrize("kwargs, message", [
    ({"minimum": -1}, "minimum"),
    ({"maximum": 2.5}, "maximum"),
    ({"minimum": 3, "maximum": 2}, "below minimum"),
    ({"wait_count": 0}, "wait_count"),
])
def test_bad_bounds_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SetCluster(1, set(), **kwargs)


def test_infinite_maximum_is_allowed() -> None:
    assert SetCluster(1, set(), maximum=math.inf).maximum == math.inf
