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


def test_dependents_of_data_on_a_paused_worker_run_elsewhere() -> None:
    s = make_state(n_workers=2)
    submit(s, "c", spec("x", workers=["w0"]))
    finished(s, "w0", "x")
    paused(s, "w0")
    submit(s, "c", spec("y", deps=("x",)))
    assert s.tasks["y"].processing_on is s.workers["w1"]
