"""The scheduler's state machine, driven directly with protocol messages.

Most of these tests pin bugs that the deterministic simulation
(``shoal.testing.simulation``) found; each docstring states the real-life
scenario and the seed that first showed it.
"""

from __future__ import annotations

from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps_function, dumps_task_args
from shoal.scheduler.invariants import check_invariants
from shoal.scheduler.records import ERRED, MEMORY, PROCESSING, QUEUED, RELEASED
from shoal.scheduler.state import SchedulerState


def _inc(x: int) -> int:
    return x + 1


FUNC_ID, FUNC_BLOB = dumps_function(_inc)
ARGS = dumps_task_args((1,), {})[0]


def make_state(n_workers: int = 1, nthreads: int = 1, clients: tuple[str, ...] = ("c",)) -> SchedulerState:
    s = SchedulerState(validate=True)
    for i in range(n_workers):
        s.add_worker(m.RegisterWorker(f"w{i}", f"w{i}", nthreads))
    for c in clients:
        s.add_client(c)
    s.take_messages()
    return s


def spec(key: str, deps: tuple[str, ...] = (), workers: list[str] | None = None) -> m.TaskSpec:
    return m.TaskSpec(key, FUNC_ID, ARGS, list(deps), 0, 0, workers)


def submit(s: SchedulerState, client: str, *specs: m.TaskSpec) -> None:
    s.handle_client(client, [m.SubmitTasks(list(specs), [m.FunctionDef(FUNC_ID, FUNC_BLOB)])], 1.0)


def finished(s: SchedulerState, worker: str, key: str, run_id: int | None = None) -> None:
    """``worker`` reports ``key`` done: for its current run there, or, when
    it runs nothing under that key any more, for a run taken back before."""
    if run_id is None:
        ts = s.tasks.get(key)
        current = ts is not None and ts.processing_on is not None and ts.processing_on.address == worker
        run_id = ts.run_id if current and ts is not None else -1
    s.handle_worker(worker, [m.TaskFinished(key, 28, "int", 0.1, run_id=run_id)], 1.0)


def scattered(s: SchedulerState, client: str, key: str, workers: list[str]) -> None:
    s.handle_client(client, [m.DataScattered([m.ScatteredKey(key, workers, 28, "int")])], 1.0)


def of_type(msgs: list[Any], t: type) -> list[Any]:
    return [x for x in msgs if type(x) is t]


# ---------------------------------------------------------------------------
# submitting on top of keys the scheduler does not know
# ---------------------------------------------------------------------------


def test_task_with_an_unknown_dependency_errs_and_the_client_is_told() -> None:
    """A client submits a task on a future whose key the scheduler has already
    forgotten (another client cancelled it with ``force=True``, or the future
    was handed over after its owner released it).  The client must hear that
    the task failed and keep a valid claim on it.  Before the fix the task
    erred and was forgotten at once, before the client's claim was recorded:
    nobody was told, the claim pointed at a forgotten record, and the
    client's future hung forever.  (Simulation seed 0.)"""
    s = make_state()
    submit(s, "c", spec("inc-2", deps=("gone-1",)))
    _, to_clients = s.take_messages()
    (err,) = of_type(to_clients["c"], m.TaskErred)
    assert err.key == "inc-2" and "does not know" in err.text
    assert s.tasks["inc-2"].state is ERRED
    assert s.tasks["inc-2"] in s.clients["c"].wants
    check_invariants(s)


def test_retrying_a_task_whose_dependency_was_unknown() -> None:
    """``retry()`` of such a task must fail again while the input is still
    unknown, and run *with* that input once it is known again; it must never
    run without it (the worker could not resolve the argument)."""
    s = make_state()
    submit(s, "c", spec("inc-2", deps=("dep-1",)))
    s.take_messages()
    s.handle_client("c", [m.RetryKeys(["inc-2"])], 2.0)
    to_workers, to_clients = s.take_messages()
    assert not of_type(to_workers.get("w0", []), m.ExecuteTask)
    assert [type(x) for x in to_clients["c"]] == [m.TaskErred]

    submit(s, "c", spec("dep-1"))  # the input is known again
    s.handle_client("c", [m.RetryKeys(["inc-2"])], 3.0)
    ts = s.tasks["inc-2"]
    assert [d.key for d in ts.deps] == ["dep-1"]
    # sent at once to the worker running its input, where it waits for it
    assert ts.state is PROCESSING and ts.processing_on is s.tasks["dep-1"].processing_on
    to_workers, _ = s.take_messages()
    (ex,) = [x for x in of_type(to_workers["w0"], m.ExecuteTask) if x.key == "inc-2"]
    assert [d.key for d in ex.deps] == ["dep-1"]
    finished(s, "w0", "dep-1")
    check_invariants(s)


# ---------------------------------------------------------------------------
# scatter
# ---------------------------------------------------------------------------


def test_scattering_again_data_whose_copies_were_lost() -> None:
    """A client scatters x; the only worker holding it dies, so x is lost
    (``FutureLost``); then equal data is scattered again, which
    ``scatter(hash=True)`` puts under the same key.  The key must be back in
    memory and the client told.  Before the fix it stayed erred while holding
    data (InvariantViolation).  (Seed 16, with shared scatter keys.)"""
    s = make_state(2)
    scattered(s, "c", "int-x", ["w0"])
    s.remove_worker("w0", 2.0)
    assert s.tasks["int-x"].state is ERRED
    s.take_messages()
    scattered(s, "c", "int-x", ["w1"])
    ts = s.tasks["int-x"]
    assert ts.state is MEMORY and ts.exception is None
    assert [w.address for w in ts.who_has] == ["w1"]
    _, to_clients = s.take_messages()
    assert [type(x) for x in to_clients["c"]] == [m.TaskDone]


def test_scatter_whose_workers_died_while_another_copy_exists() -> None:
    """Two clients scatter equal data (one key); the worker the second one
    used dies before its ``DataScattered`` arrives.  The first copy is still
    there: the key stays in memory, wanted by both.  Before the fix the
    scheduler tried memory -> erred and raised InvalidTransition."""
    s = make_state(2, clients=("c", "c2"))
    scattered(s, "c", "int-x", ["w0"])
    s.remove_worker("w1", 2.0)
    scattered(s, "c2", "int-x", ["w1"])
    ts = s.tasks["int-x"]
    assert ts.state is MEMORY and ts.n_wanted == 2
    check_invariants(s)


def test_scatter_to_dead_workers_of_a_lost_key_tells_the_client() -> None:
    """As above, but the key had already been lost: the second client must
    hear that it erred.  Before the fix it was told nothing (the key was
    already erred, so no transition reported it) and waited forever."""
    s = make_state(2, clients=("c", "c2"))
    scattered(s, "c", "int-x", ["w0"])
    s.remove_worker("w0", 2.0)
    s.remove_worker("w1", 2.0)
    s.take_messages()
    scattered(s, "c2", "int-x", ["w1"])
    _, to_clients = s.take_messages()
    assert [type(x) for x in to_clients["c2"]] == [m.TaskErred]


# ---------------------------------------------------------------------------
# stale recommendations
# ---------------------------------------------------------------------------


def test_retry_that_fails_at_once_does_not_restart_released_inputs() -> None:
    """Task a = f(b, s) erred because s, scattered data, was lost with its
    worker; the client has released b, which is kept only as a's lineage.
    Retrying a fails again at once (s cannot be rebuilt), and b must not be
    recomputed for nobody: before the fix b was started anyway (its
    recommendation outlived a's failure in the same batch) and then sat
    queued or in memory with no one needing it, a leak.  (Seed 148.)"""
    s = make_state(2)
    scattered(s, "c", "int-s", ["w0"])
    submit(s, "c", spec("b-1", workers=["w1"]))
    finished(s, "w1", "b-1")
    submit(s, "c", spec("a-1", deps=("b-1", "int-s"), workers=["w1"]))
    s.remove_worker("w0", 2.0)
    assert s.tasks["a-1"].state is ERRED
    s.handle_client("c", [m.ReleaseKeys(["b-1"])], 3.0)
    assert s.tasks["b-1"].state is RELEASED
    s.take_messages()
    s.handle_client("c", [m.RetryKeys(["a-1"])], 4.0)
    assert s.tasks["a-1"].state is ERRED
    assert s.tasks["b-1"].state is RELEASED
    to_workers, to_clients = s.take_messages()
    assert not of_type(to_workers.get("w1", []), m.ExecuteTask)
    assert of_type(to_clients["c"], m.TaskErred)


def test_worker_death_does_not_restart_a_task_nobody_needs_any_more() -> None:
    """A worker dies holding d and s and running a = f(d); the only need for
    a is f = g(a), whose only need is the client's g2 = h(f, s).  Losing s
    (scattered: cannot be rebuilt) fails g2, which releases f, which
    releases a; but losing d recommends rerunning a, and that recommendation
    overwrote the release in the same batch.  Before the fix a was put back
    to waiting with nobody needing it (a leak).  (Seed 201.)"""
    s = make_state(1)
    scattered(s, "c", "int-s", ["w0"])
    submit(s, "c", spec("d-1"))
    finished(s, "w0", "d-1")
    submit(s, "c", spec("a-1", deps=("d-1",)))
    assert s.tasks["a-1"].state is PROCESSING
    submit(s, "c", spec("f-1", deps=("a-1",)), spec("g-1", deps=("f-1", "int-s")))
    s.handle_client("c", [m.ReleaseKeys(["d-1", "a-1", "f-1"])], 2.0)
    s.remove_worker("w0", 3.0)
    assert s.tasks["g-1"].state is ERRED
    assert s.tasks["a-1"].state is RELEASED
    assert s.tasks["f-1"].state is RELEASED
    check_invariants(s)


# ---------------------------------------------------------------------------
# reports about runs the scheduler took back
# ---------------------------------------------------------------------------


def test_a_result_from_a_run_taken_back_is_not_counted() -> None:
    """The client releases x while w0 runs it; w0 finishes before the
    ``FreeKeys`` arrives, so its ``TaskFinished`` is already on the way.  x is
    submitted again and runs on w1.  w0's late report must not make w0 a
    holder of x (w0 drops x on ``FreeKeys``).  Before the fix the scheduler
    believed w0 held x, and a client gathering x from w0 failed with
    ``FutureLost``.  (Seed 509.)"""
    s = make_state(2)
    submit(s, "c", spec("x-1", workers=["w0"]))
    s.handle_client("c", [m.ReleaseKeys(["x-1"])], 2.0)
    submit(s, "c", spec("x-1", workers=["w1"]))
    s.take_messages()
    finished(s, "w0", "x-1")  # the late report
    ts = s.tasks["x-1"]
    assert ts.state is PROCESSING and ts.processing_on is s.workers["w1"] and not ts.who_has
    to_workers, _ = s.take_messages()
    assert not to_workers.get("w1")  # w1's run is not taken back
    finished(s, "w1", "x-1")
    assert ts.state is MEMORY and [w.address for w in ts.who_has] == ["w1"]


def test_each_run_taken_back_may_send_one_late_report() -> None:
    """x is released and submitted again twice while w0 runs it, then runs
    on w1; both of w0's runs may report after being taken back, and neither
    report may make w0 a holder.  A run asked for again on the same worker
    is still accepted when it reports.  (Seed 2554.)"""
    s = make_state(2)
    for _ in range(2):
        submit(s, "c", spec("x-1", workers=["w0"]))
        s.handle_client("c", [m.ReleaseKeys(["x-1"])], 2.0)
    submit(s, "c", spec("x-1", workers=["w1"]))
    finished(s, "w0", "x-1")
    finished(s, "w0", "x-1")
    ts = s.tasks["x-1"]
    assert ts.state is PROCESSING and ts.processing_on is s.workers["w1"] and not ts.who_has
    finished(s, "w1", "x-1")
    assert [w.address for w in ts.who_has] == ["w1"]

    submit(s, "c", spec("y-1", workers=["w0"]))
    s.handle_client("c", [m.ReleaseKeys(["y-1"])], 3.0)  # w0 cancels its run silently...
    submit(s, "c", spec("y-1", workers=["w0"]))  # ...and takes it up again
    finished(s, "w0", "y-1")
    assert s.tasks["y-1"].state is MEMORY


def test_a_copy_announced_by_the_worker_now_computing_it_is_kept() -> None:
    """w1 fetched x from w0 for its task y; w0 dies before the scheduler hears
    of w1's copy, so x is recomputed, on w1.  w1's ``ReplicasAdded`` then
    arrives while x is processing on w1: w1 must not be told to drop x (it
    answers the ``ExecuteTask`` from that copy).  Before the fix a
    ``FreeKeys(x)`` followed the ``ExecuteTask``, w1 dropped the copy it had
    just reported as the result, and the scheduler believed w1 held x.
    (Seed 651.)"""
    s = make_state(2)
    submit(s, "c", spec("x-1"))
    assert s.tasks["x-1"].processing_on is s.workers["w0"]
    finished(s, "w0", "x-1")
    submit(s, "c", spec("y-1", deps=("x-1",), workers=["w1"]))
    s.remove_worker("w0", 2.0)
    assert s.tasks["x-1"].processing_on is s.workers["w1"]
    s.take_messages()
    s.handle_worker("w1", [m.ReplicasAdded(["x-1"], [28])], 3.0)
    to_workers, _ = s.take_messages()
    assert not of_type(to_workers.get("w1", []), m.FreeKeys)
    finished(s, "w1", "x-1")
    assert s.tasks["x-1"].state is MEMORY


# ---------------------------------------------------------------------------
# queued tasks and freed slots
# ---------------------------------------------------------------------------


def test_queued_task_starts_when_a_release_frees_a_slot() -> None:
    """A worker is full and a root task waits in the scheduler's queue; the
    client releases the running tasks.  The queued task must go to the worker
    at once.  Before the fix it waited for that worker's next message, which
    never came when nothing else ran there (a real worker's heartbeat would
    eventually unstick it).  (Seed 3031.)  A run taken back may still hold
    the thread until the worker says it ended, but the slot ahead is free."""
    s = make_state(1)
    submit(s, "c", spec("a-1"), spec("b-1"), spec("q-1"))
    assert s.tasks["q-1"].state is QUEUED
    s.take_messages()
    s.handle_client("c", [m.ReleaseKeys(["a-1", "b-1"])], 2.0)
    assert s.tasks["q-1"].state is PROCESSING
    to_workers, _ = s.take_messages()
    assert [x.key for x in of_type(to_workers["w0"], m.ExecuteTask)] == ["q-1"]


def test_cancel_unstarted_spares_what_a_worker_has() -> None:
    """A ``concurrent.futures`` cancel (``ClientExecutor``): the client asks to
    cancel a running task, a queued one, one waiting on that, a finished one,
    one it never asked for and an unknown key.  Only the queued and the
    waiting task may go, and the client hears of exactly those: a True
    ``cancel()`` promises the call never runs."""
    s = make_state(1, clients=("c", "d"))
    submit(s, "c", spec("done-1"))
    finished(s, "w0", "done-1")
    submit(s, "c", spec("a-1"), spec("b-1"), spec("q-1"), spec("dep-1", deps=("q-1",)))
    submit(s, "d", spec("other-1"))
    assert s.tasks["a-1"].state is PROCESSING and s.tasks["q-1"].state is QUEUED
    assert s.tasks["dep-1"].state.value == "waiting"
    s.take_messages()
    got = s.cancel_unstarted("c", ["a-1", "q-1", "dep-1", "done-1", "other-1", "nope-1"], 2.0)
    assert got == ["q-1", "dep-1"]
    _, to_clients = s.take_messages()
    assert of_type(to_clients["c"], m.TasksCancelled) == [m.TasksCancelled(["q-1", "dep-1"], "cancelled")]
    assert "d" not in to_clients
    assert "q-1" not in s.tasks and "dep-1" not in s.tasks
    assert s.tasks["a-1"].state is PROCESSING and s.tasks["done-1"].state is MEMORY
    assert s.tasks["other-1"].state in (PROCESSING, QUEUED)
    check_invariants(s)


# ---------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------


def test_dependents_are_placed_most_urgent_first_every_time() -> None:
    """When a task finishes, the dependents it unblocks are placed most
    urgent first, so the same events always give the same messages.  Before,
    the order followed the records' ids (they sat in a set), so it changed
    from run to run and a failing simulation seed did not replay."""
    keys = [f"d{i}-1" for i in range(20)]
    for _ in range(3):
        s = make_state(1, nthreads=50)
        # restricted, so they wait for r-1 rather than being pipelined onto w0
        submit(s, "c", spec("r-1"), *(spec(k, deps=("r-1",), workers=["w0"]) for k in keys))
        s.take_messages()
        finished(s, "w0", "r-1")
        to_workers, _ = s.take_messages()
        assert [x.key for x in of_type(to_workers["w0"], m.ExecuteTask)] == keys


# ---------------------------------------------------------------------------
# pipelining: dependents sent ahead to the worker running their inputs
# ---------------------------------------------------------------------------


def test_a_chain_is_sent_ahead_to_the_worker_running_it() -> None:
    """b needs a, which runs on w0: b goes to w0 at once and waits there, so a
    chain needs no scheduler round trip per link; when a finishes, nothing
    more is sent."""
    s = make_state(2)
    submit(s, "c", spec("a-1"), spec("b-1", deps=("a-1",)), spec("c-1", deps=("b-1",)))
    w0 = s.tasks["a-1"].processing_on
    assert s.tasks["b-1"].processing_on is w0 and s.tasks["c-1"].processing_on is w0
    to_workers, _ = s.take_messages()
    assert [x.key for x in of_type(to_workers[w0.address], m.ExecuteTask)] == ["a-1", "b-1", "c-1"]
    finished(s, w0.address, "a-1")
    to_workers, _ = s.take_messages()
    assert not of_type(to_workers.get(w0.address, []), m.ExecuteTask)
    check_invariants(s)


def test_when_an_input_fails_the_tasks_sent_ahead_are_taken_back() -> None:
    """a fails on w0: b, waiting there for it, errs too and w0 is told to drop
    it; with retries, b is taken back and waits for the rerun of a."""
    s = make_state(1)
    submit(s, "c", spec("a-1"), spec("b-1", deps=("a-1",)))
    s.take_messages()
    ts_a = s.tasks["a-1"]
    run_b = s.tasks["b-1"].run_id
    s.handle_worker("w0", [m.TaskFailed("a-1", ARGS, ARGS, "boom", 0.1, ts_a.run_id)], 2.0)
    assert s.tasks["b-1"].state is ERRED
    to_workers, _ = s.take_messages()
    assert m.FreeKeys(["b-1"], [run_b]) in to_workers["w0"]
    check_invariants(s)

    s = make_state(1)
    submit(s, "c", m.TaskSpec("a-1", FUNC_ID, ARGS, [], 0, 1), spec("b-1", deps=("a-1",)))
    s.take_messages()
    run_b = s.tasks["b-1"].run_id
    s.handle_worker("w0", [m.TaskFailed("a-1", ARGS, ARGS, "boom", 0.1, s.tasks["a-1"].run_id)], 2.0)
    to_workers, _ = s.take_messages()
    assert m.FreeKeys(["b-1"], [run_b]) in to_workers["w0"]
    assert s.tasks["a-1"].state is PROCESSING  # the retry
    assert s.tasks["b-1"].state is PROCESSING  # sent ahead again, after the retry
    check_invariants(s)


def test_a_task_that_raises_reschedule_runs_again_without_erring() -> None:
    """A task raised ``Reschedule`` on w0: the scheduler runs it again (a
    fresh run, any worker its rules pick), counting no failure and keeping
    its retries; the client hears nothing until the result."""
    s = make_state(2)
    submit(s, "c", m.TaskSpec("x-1", FUNC_ID, ARGS, [], 0, 2, None))
    ts = s.tasks["x-1"]
    first_run, first_worker = ts.run_id, ts.processing_on
    assert first_worker is not None
    s.take_messages()
    exc, tb = dumps_task_args((), {})[0], dumps_task_args((), {})[0]
    s.handle_worker(first_worker.address, [m.TaskFailed("x-1", exc, tb, "Reschedule", 0.1, first_run,
                                                        reschedule=True)], 2.0)
    assert ts.state is PROCESSING and ts.run_id != first_run and ts.retries == 2
    _, to_clients = s.take_messages()
    assert not to_clients.get("c")  # no TaskErred
    finished(s, ts.processing_on.address, "x-1")
    assert ts.state is MEMORY


# ---------------------------------------------------------------------------
# idle threads first, whatever earlier work left behind
# ---------------------------------------------------------------------------


def test_a_run_taken_back_keeps_its_thread_busy_until_it_ends() -> None:
    """A cancelled task goes on running on its thread (threads cannot be
    stopped).  The next task must go to the idle worker, not queue behind
    it; once the worker says the run ended, its thread is free again.
    Before the fix the scheduler forgot the run at the cancel, and tasks
    submitted next waited there while other threads idled (issue 9: three
    sleeps on four threads came back out of order)."""
    s = make_state(2)
    submit(s, "c", spec("a-1"))
    w0 = s.tasks["a-1"].processing_on
    assert w0 is not None
    run_a = s.tasks["a-1"].run_id
    s.handle_client("c", [m.CancelKeys(["a-1"])], 2.0)
    to_workers, _ = s.take_messages()
    assert m.FreeKeys(["a-1"], [run_a]) in to_workers[w0.address]
    assert w0.stopping == {run_a} and w0.busy == 1
    submit(s, "c", spec("b-1"))
    assert s.tasks["b-1"].processing_on is not w0
    s.handle_worker(w0.address, [m.RunsEnded([run_a])], 3.0)
    assert not w0.stopping and w0.busy == 0
    submit(s, "c", spec("c-1"))
    assert s.tasks["c-1"].processing_on is w0
    check_invariants(s)


def test_runs_taken_back_that_are_not_counted_as_busy() -> None:
    """A task that seceded gave its thread's slot away: taking it back frees
    nothing.  A tiny task ends (or is skipped unstarted) at once: cancelling
    a big map of them must not make the worker look busy.  And a worker
    cannot have more runs on its threads than it has threads."""
    s = make_state(1)
    submit(s, "c", spec("a-1"))
    ts = s.tasks["a-1"]
    s.handle_worker("w0", [m.TaskSeceded("a-1", ts.run_id)], 1.5)
    s.handle_client("c", [m.CancelKeys(["a-1"])], 2.0)
    assert not s.workers["w0"].stopping and s.workers["w0"].busy == 0

    s = make_state(1, nthreads=2)
    s.durations["tiny"] = 1e-5
    tiny = [spec(f"tiny-{i:04x}") for i in range(100)]
    submit(s, "c", *tiny)
    s.handle_client("c", [m.CancelKeys([x.key for x in tiny])], 2.0)
    assert not s.workers["w0"].stopping and s.workers["w0"].busy == 0

    s = make_state(1, nthreads=2)
    submit(s, "c", *(spec(f"slow-{i:04x}") for i in range(4)))  # 2 threads, 2 ahead
    s.handle_client("c", [m.CancelKeys([f"slow-{i:04x}" for i in range(4)])], 2.0)
    w0 = s.workers["w0"]
    assert len(w0.stopping) == 4 and w0.busy == 2


def test_queued_long_tasks_are_not_stacked_by_the_duration_of_stale_entries() -> None:
    """Two one-thread workers are full of tiny tasks; more tiny ones wait in
    the queue, then three long ones; the queued tiny ones are cancelled (their
    entries leave the queue lazily).  When a worker frees up, the long tasks
    must get the slots of *long* tasks (one running, one ahead), not the 200
    extra slots the cancelled tiny entry at the head of the queue suggested:
    all three went to the first free worker, behind each other, while the
    other one was about to idle."""
    s = make_state(2)
    s.durations["tiny"] = 1e-5
    s.durations["slow"] = 1.0
    tiny = [spec(f"tiny-{i:04x}") for i in range(402 + 5)]
    submit(s, "c", *tiny)
    slow = [spec(f"slow-{i:04x}") for i in range(3)]
    submit(s, "c", *slow)
    assert all(s.tasks[x.key].state is QUEUED for x in [*tiny[402:], *slow])
    s.handle_client("c", [m.CancelKeys([x.key for x in tiny[402:]])], 2.0)
    w0 = s.workers["w0"]
    done = [m.TaskFinished(ts.key, 28, "int", 1e-5, run_id=ts.run_id) for ts in list(w0.processing)]
    s.handle_worker("w0", done, 3.0)
    on_w0 = [x.key for x in slow if s.tasks[x.key].processing_on is w0]
    assert len(on_w0) == 2  # its thread and one ahead, as for any long task
    assert s.tasks[slow[2].key].state is QUEUED
    check_invariants(s)


# ---------------------------------------------------------------------------
# answering releases: news about a key's next futures comes after the answer
# ---------------------------------------------------------------------------


def test_a_release_is_answered_ahead_of_news_about_the_key_wanted_again() -> None:
    """Client c drops its future of x (another client keeps x in memory) and
    asks for x again at once.  The ``TaskDone`` it had been sent about its old
    future may still be on the way; the answer to its release must reach it
    after that and before the news about the new future, so that it can tell
    them apart.  The answer rides with that news, not in a message of its own
    (a message more per round trip), and a quiet client gets it from
    ``flush_release_acks``."""
    s = make_state(1, clients=("c", "d"))
    submit(s, "c", spec("x-1"))
    submit(s, "d", spec("x-1"))
    finished(s, "w0", "x-1")
    s.take_messages()
    s.handle_client("c", [m.ReleaseKeys(["x-1"]), m.SubmitTasks([spec("x-1")], [])], 2.0)
    _, to_clients = s.take_messages()
    assert [type(x) for x in to_clients["c"]] == [m.ReleaseHandled, m.TaskDone]
    assert to_clients["c"][0].count == 1

    s.handle_client("c", [m.ReleaseKeys(["x-1"])], 3.0)
    s.handle_client("c", [m.ReleaseKeys(["other-1"])], 3.0)
    assert s.take_messages()[1] == {}  # nothing else to say: no message of its own
    assert s.flush_release_acks()
    assert s.take_messages()[1] == {"c": [m.ReleaseHandled(2)]}
    assert not s.flush_release_acks()
    check_invariants(s)
