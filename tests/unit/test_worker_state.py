"""The worker's state machine, driven directly with protocol messages and
completion events.

These tests pin bugs that the deterministic simulation
(``shoal.testing.simulation``) found; each docstring states the real-life
scenario and the seed that first showed it.
"""

from __future__ import annotations

from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, dumps_function, dumps_task_args
from shoal.worker.state import Execute, GatherDep, WorkerState


def _inc(x: int) -> int:
    return x + 1


FUNC_ID, _ = dumps_function(_inc)
ARGS = dumps_task_args((1,), {})[0]


def execute(key: str, priority: int = 0, **deps: list[str]) -> m.ExecuteTask:
    """``ExecuteTask(key)`` whose dependencies ``deps`` are held by those workers."""
    locations = [m.DependencyLocation(k, workers, 28) for k, workers in deps.items()]
    return m.ExecuteTask(key, FUNC_ID, ARGS, priority, locations)


def of_type(items: list[Any], t: type) -> list[Any]:
    return [x for x in items if type(x) is t]


def test_dependency_still_running_here_after_a_cancel_is_fetched() -> None:
    """w runs x; the scheduler takes x back (another worker's copy was
    reported first) with ``FreeKeys(x)``, then asks w to run y, which needs
    x from that other worker.  When w's cancelled run of x ends, its value is
    dropped (the server keeps nothing from a cancelled run), so w must fetch
    x for y.  Before the fix x was forgotten while y still counted on it: y
    waited forever (InvariantViolation "lost track of its dependency").
    (Simulation seed 509.)"""
    ws = WorkerState("w", 2, validate=True)
    ws.handle_scheduler([execute("x")])
    assert ws.take()[1] == [Execute("x")]
    ws.handle_scheduler([m.FreeKeys(["x"]), execute("y", x=["other"])])
    ws.take()
    ws.execute_done("x", 28, "int", 0.1, None)
    msgs, instructions = ws.take()
    assert not of_type(msgs, m.TaskFinished)
    assert instructions == [GatherDep("other", ["x"])]
    ws.gather_done("other", {"x": 28}, [])
    msgs, instructions = ws.take()
    assert instructions == [Execute("y")]
    assert of_type(msgs, m.ReplicasAdded) == [m.ReplicasAdded(["x"], [28])]


def test_dependency_whose_cancelled_run_failed_is_fetched() -> None:
    """As above, but the cancelled run of x raised: y still needs x, which
    another worker computed fine, so it is fetched; the failure of a run the
    scheduler took back is not reported."""
    ws = WorkerState("w", 2, validate=True)
    ws.handle_scheduler([execute("x")])
    ws.handle_scheduler([m.FreeKeys(["x"]), execute("y", x=["other"])])
    ws.take()
    exc = dumps(ValueError("boom"))
    ws.execute_failed("x", exc, dumps(None), "ValueError: boom", 0.1)
    msgs, instructions = ws.take()
    assert not of_type(msgs, m.TaskFailed)
    assert instructions == [GatherDep("other", ["x"])]


def test_key_needed_again_while_its_old_fetch_is_in_flight() -> None:
    """y needs x from peer p; while that fetch is in flight the scheduler
    frees y (so x is forgotten here), then sends z, which needs x from p too;
    p is busy with the first request, so x waits.  The reply to the first
    request carries x: it must be used.  Before the fix it was dropped as
    unwanted and x reported missing on p (``DataMissing``): the scheduler
    then believed p had lost x and recomputed it, while p kept a copy nobody
    tracked.  (Seed 491.)"""
    ws = WorkerState("w", 1, validate=True)
    ws.handle_scheduler([execute("y", x=["p"])])
    assert ws.take()[1] == [GatherDep("p", ["x"])]
    ws.handle_scheduler([m.FreeKeys(["y"])])
    ws.handle_scheduler([execute("z", x=["p"])])
    assert not of_type(ws.take()[1], GatherDep)  # one request per peer at a time
    assert ws.wants_data("x")
    ws.gather_done("p", {"x": 28}, [])
    msgs, instructions = ws.take()
    assert instructions == [Execute("z")]
    assert not of_type(msgs, m.DataMissing)


def test_dependency_said_to_be_here_but_missing_is_reported() -> None:
    """The scheduler believes this worker holds x (its copy was dropped after
    a report that crossed a ``FreeKeys``, e.g. equal data scattered twice
    under one key) and sends y, which needs x, here.  The worker must say
    that x is missing rather than wait for a fetch with no peer to ask.
    Before the fix y waited forever.  (Seed 20 with shared scatter keys.)"""
    ws = WorkerState("w", 1, validate=True)
    ws.handle_scheduler([execute("y", x=["w"])])
    msgs, instructions = ws.take()
    assert msgs == [m.DataMissing("x", ["w"])]
    assert not instructions
    ws.handle_scheduler([m.FreeKeys(["y"])])  # what the scheduler answers
    assert not ws.tasks


# ---------------------------------------------------------------------------
# tiny tasks: queued in the executor ahead
# ---------------------------------------------------------------------------


def test_tiny_tasks_are_handed_to_the_executor_ahead() -> None:
    """A one-thread worker running 10 µs tasks: waiting for the event loop
    between tasks would cost more than the tasks, so once tasks are known to
    be tiny it hands the executor a queue of them; long tasks go one per
    thread, so that the scheduler can still move work between workers."""
    ws = WorkerState("w", 1, validate=True)
    ws.handle_scheduler([execute(f"t{i}") for i in range(50)])
    assert ws.take()[1] == [Execute("t0")]  # durations unknown: one per thread
    ws.execute_done("t0", 28, "int", 1e-5, None)
    started = of_type(ws.take()[1], Execute)
    assert len(started) == 49  # everything ready, in priority order
    assert [e.key for e in started] == [f"t{i}" for i in range(1, 50)]

    slow = WorkerState("w", 2, validate=True)
    slow.handle_scheduler([execute(f"s{i}") for i in range(10)])
    slow.take()
    slow.execute_done("s0", 28, "int", 0.5, None)
    assert of_type(slow.take()[1], Execute) == [Execute("s2")]  # one slot freed, one started


def test_a_task_freed_while_queued_in_the_executor_is_skipped_silently() -> None:
    ws = WorkerState("w", 1, validate=True)
    ws.mean_duration = 1e-5
    ws.handle_scheduler([execute("a"), execute("b")])
    assert of_type(ws.take()[1], Execute) == [Execute("a"), Execute("b")]
    ws.handle_scheduler([m.FreeKeys(["b"])])
    ws.execute_skipped("b")
    msgs, instructions = ws.take()
    assert not msgs and not instructions
    assert "b" not in ws.tasks and "b" not in ws.executing


# ---------------------------------------------------------------------------
# runs the scheduler takes back: answered once they hold no thread
# ---------------------------------------------------------------------------


def run(key: str, run_id: int) -> m.ExecuteTask:
    return m.ExecuteTask(key, FUNC_ID, ARGS, 0, [], run_id=run_id)


def test_a_run_taken_back_is_answered_when_its_thread_is_free() -> None:
    """The scheduler counts a run it took back as busy until the worker says
    it holds no thread (a running task cannot be stopped).  A run not yet
    started, or unknown here, is answered at once; a running one when it
    ends, whether it succeeds, fails or was skipped in the executor's queue."""
    ws = WorkerState("w", 1, validate=True)
    ws.handle_scheduler([run("a", 1), run("b", 2)])  # a runs, b waits for the thread
    ws.take()
    ws.handle_scheduler([m.FreeKeys(["a", "b", "gone"], [1, 2, 3])])
    msgs, _ = ws.take()
    assert msgs == [m.RunsEnded([2, 3])]  # a still holds the thread
    ws.execute_done("a", 28, "int", 0.5, None)
    msgs, _ = ws.take()
    assert msgs == [m.RunsEnded([1])]  # and no TaskFinished for it

    ws.handle_scheduler([run("c", 4)])
    ws.take()
    ws.handle_scheduler([m.FreeKeys(["c"], [4])])
    assert ws.take()[0] == []
    ws.execute_failed("c", ARGS, ARGS, "boom", 0.5)
    assert ws.take()[0] == [m.RunsEnded([4])]

    ws.mean_duration = 1e-5  # tiny tasks: queued in the executor ahead
    ws.handle_scheduler([run("d", 5), run("e", 6)])
    assert of_type(ws.take()[1], Execute) == [Execute("d"), Execute("e")]
    ws.handle_scheduler([m.FreeKeys(["e"], [6])])
    assert ws.take()[0] == []
    ws.execute_skipped("e")
    assert ws.take()[0] == [m.RunsEnded([6])]


def test_a_run_taken_back_and_given_again_goes_on_as_the_new_run() -> None:
    """The scheduler takes a's run back, then gives a to this worker again
    while the old run still goes: the thread now serves the new run, so the
    old one is answered at once, and the result answers the new one."""
    ws = WorkerState("w", 1, validate=True)
    ws.handle_scheduler([run("a", 1)])
    ws.take()
    ws.handle_scheduler([m.FreeKeys(["a"], [1]), run("a", 2)])
    assert ws.take()[0] == [m.RunsEnded([1])]
    ws.execute_done("a", 28, "int", 0.5, None)
    (finished,) = of_type(ws.take()[0], m.TaskFinished)
    assert finished.run_id == 2
