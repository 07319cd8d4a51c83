"""The scheduler and workers under memory pressure: paused workers get no
new work and get it again when they resume.  Pure state machine tests."""

from __future__ import annotations

from shoal.protocol import messages as m
from shoal.scheduler.records import NO_WORKER, PROCESSING, QUEUED
from tests.unit.test_scheduler_state import finished, make_state, of_type, spec, submit


def paused(s: object, worker: str, status: str = "paused") -> None:
    s.handle_worker(worker, [m.WorkerStatus(status)], 2.0)  # type: ignore[attr-defined]


def test_a_paused_worker_gets_no_new_tasks_until_it_resumes() -> None:
    s = make_state(n_workers=2)
    paused(s, "w0")
    assert s.workers["w0"].status == "paused"
    submit(s, "c", spec("a"), spec("b"))
    to_workers, _ = s.take_messages()
    assert "w0" not in to_workers
    assert s.tasks["a"].processing_on is s.workers["w1"]
    # restricted to the paused worker: it waits, then runs once w0 resumes
    submit(s, "c", spec("r", workers=["w0"]))
    assert s.tasks["r"].state is NO_WORKER
    paused(s, "w0", "running")
    assert s.workers["w0"].status == "running"
    assert s.tasks["r"].state is PROCESSING and s.tasks["r"].processing_on is s.workers["w0"]
    assert [x.key for x in of_type(s.take_messages()[0]["w0"], m.ExecuteTask)] == ["r"]


def test_queued_root_tasks_wait_for_a_paused_worker_to_resume() -> None:
    s = make_state(n_workers=1)
    paused(s, "w0")
    submit(s, "c", spec("a"))
    assert s.tasks["a"].state is QUEUED
    paused(s, "w0", "running")
    assert s.tasks["a"].state is PROCESSING


def test_a_retiring_worker_stays_retiring_through_pause_and_resume() -> None:
    from shoal.scheduler.control_state import set_retiring

    s = make_state(n_workers=2)
    set_retiring(s, "w0", True)
    paused(s, "w0")
    paused(s, "w0", "running")
    assert s.workers["w0"].status == "closing_gracefully"
    paused(s, "w0")
    set_retiring(s, "w0", False)  # given up while paused: paused it is
    assert s.workers["w0"].status == "paused"
    submit(s, "c", spec("a"))
    assert s.tasks["a"].processing_on is s.workers["w1"]


def test_dependents_of_data_on_a_paused_worker_run_elsewhere() -> None:
    s = make_state(n_workers=2)
    submit(s, "c", spec("x", workers=["w0"]))
    finished(s, "w0", "x")
    paused(s, "w0")
    submit(s, "c", spec("y", deps=("x",)))
    assert s.tasks["y"].processing_on is s.workers["w1"]


# ---------------------------------------------------------------------------
# work stealing
# ---------------------------------------------------------------------------


class _Harness:
    """What the WorkStealing extension uses of its server: the state, a
    flush (messages stay in the state's outbox here) and a status."""

    status = "running"

    def __init__(self, state: object) -> None:
        self.state = state

    def _schedule_flush(self) -> None:
        pass


def _pile_on_w0(n: int) -> object:
    """``n`` tasks on w0, all needing a 2 MB input only w0 holds (so
    placement puts them there), while w1 idles."""
    s = make_state(n_workers=2)
    submit(s, "c", spec("x", workers=["w0"]))
    s.handle_worker("w0", [m.TaskFinished("x", 2_000_000, "bytes", 0.1,
                                          run_id=s.tasks["x"].run_id)], 1.0)
    s.durations[s.tasks["x"].prefix] = 0.5  # the dependents' prefix: slow tasks
    submit(s, "c", *[spec(f"t{i}", deps=("x",)) for i in range(n)])
    s.take_messages()
    assert all(s.tasks[f"t{i}"].processing_on is s.workers["w0"] for i in range(n))
    return s


def test_plan_moves_the_least_urgent_surplus_to_idle_workers() -> None:
    from shoal.scheduler import stealing

    s = _pile_on_w0(4)
    steals = stealing.plan(s)  # type: ignore[arg-type]
    assert [(ts.key, v.address, t.address) for ts, v, t in steals] == [("t3", "w0", "w1")]
    assert stealing.plan(s, {"t3"}) and stealing.plan(s, {"t3"})[0][0].key == "t2"  # type: ignore[arg-type]


def test_plan_leaves_short_and_restricted_tasks_and_balanced_workers() -> None:
    from shoal.scheduler import stealing

    s = _pile_on_w0(3)
    s.durations[s.tasks["t0"].prefix] = 0.001  # not worth a round trip
    for ts in s.workers["w0"].processing:
        s.workers["w0"].processing[ts] = 0.001
    assert stealing.plan(s) == []  # type: ignore[arg-type]
    s2 = make_state(n_workers=2)
    submit(s2, "c", spec("a", workers=["w0"]), spec("b", workers=["w0"]))
    assert stealing.plan(s2) == []  # type: ignore[arg-type]
    s3 = make_state(n_workers=2)
    submit(s3, "c", spec("a"), spec("b"))
    assert stealing.plan(s3) == []  # type: ignore[arg-type]


def test_a_steal_the_victim_grants_moves_the_task_to_the_thief() -> None:
    from shoal.scheduler.work_stealing import WorkStealing
    from shoal.worker.state import WorkerState

    s = _pile_on_w0(3)
    ext = WorkStealing(_Harness(s))  # type: ignore[arg-type]
    assert ext.balance() == 1
    request = of_type(s.take_messages()[0]["w0"], m.StealRequest)[0]
    assert request.key == "t2"
    # the victim's state machine: t2 has not started (one thread, t0 runs)
    w0 = WorkerState("w0", 1, validate=True)
    w0.handle_scheduler([m.ExecuteTask("x-copy", b"f", s.tasks["t0"].args, 0)])  # busy thread
    w0.handle_scheduler([m.ExecuteTask("t2", b"f", s.tasks["t2"].args, 0, run_id=request.run_id)])
    w0.take()
    w0.handle_scheduler([request])
    answer = of_type(w0.take()[0], m.StealResponse)[0]
    assert answer.stolen and "t2" not in w0.tasks
    s.handle_worker("w0", [answer], 2.0)  # the server routes it to the extension
    ext.on_steal_response("w0", answer)
    assert s.tasks["t2"].processing_on is s.workers["w1"]
    assert ext.stolen == 1 and not ext.asked
    assert [x.key for x in of_type(s.take_messages()[0]["w1"], m.ExecuteTask)] == ["t2"]


def test_a_started_task_is_not_given_away_and_stale_answers_change_nothing() -> None:
    from shoal.scheduler.work_stealing import WorkStealing
    from shoal.worker.state import WorkerState

    w = WorkerState("w0", 1, validate=True)
    w.handle_scheduler([m.ExecuteTask("t", b"f", m.Payload(b""), 0, run_id=5)])  # type: ignore[attr-defined]
    w.take()
    w.handle_scheduler([m.StealRequest("t", 5)])
    assert of_type(w.take()[0], m.StealResponse) == [m.StealResponse("t", 5, False)]
    assert "t" in w.tasks
    s = _pile_on_w0(3)
    ext = WorkStealing(_Harness(s))  # type: ignore[arg-type]
    ext.balance()
    key, (run_id, _, _) = next(iter(ext.asked.items()))
    finished(s, "w0", key)  # it finished before the answer came
    ext.on_steal_response("w0", m.StealResponse(key, run_id, True))
    assert s.tasks[key].state.value == "memory" and ext.stolen == 0


# ---------------------------------------------------------------------------
# the Active Memory Manager's policy
# ---------------------------------------------------------------------------


def test_reduce_replicas_keeps_one_copy_and_those_dependents_need() -> None:
    from shoal.scheduler.replica_policy import reduce_replicas

    s = make_state(n_workers=3)
    submit(s, "c", spec("x", workers=["w0"]))
    finished(s, "w0", "x")
    for w in ("w1", "w2"):
        s.handle_worker(w, [m.ReplicasAdded(["x"], [28])], 1.0)
    assert len(s.tasks["x"].who_has) == 3
    s.workers["w2"].memory = 10**9  # the fullest: their copies go first
    s.workers["w0"].memory = 10**8
    drops = reduce_replicas(s)  # type: ignore[arg-type]
    assert sorted((w.address, keys) for w, keys in drops.items()) == [("w0", ["x"]), ("w2", ["x"])]
    # a dependent running on w2 needs its copy there: w1's goes instead
    submit(s, "c", spec("y", deps=("x",), workers=["w2"]))
    assert s.tasks["y"].processing_on is s.workers["w2"]
    drops = reduce_replicas(s)  # type: ignore[arg-type]
    assert sorted((w.address, keys) for w, keys in drops.items()) == [("w0", ["x"]), ("w1", ["x"])]
    # a result held once is never dropped
    submit(s, "c", spec("z", workers=["w0"]))
    finished(s, "w0", "z")
    assert all("z" not in keys for keys in reduce_replicas(s).values())  # type: ignore[arg-type]
