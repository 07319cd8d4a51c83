"""Heartbeats and failure reports, in their pure parts: the silence clock
both sides use, the nanny's reading of exit codes, and what the state
machines do when a worker leaves (docs/failures.md)."""

from __future__ import annotations

import signal

import pytest

from shoal import KilledWorker
from shoal.cluster.process import LOST_SCHEDULER_EXIT_CODE, death_reason
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps_function, dumps_task_args
from shoal.scheduler.liveness import SilenceClock
from shoal.scheduler.state import SchedulerState
from shoal.worker.state import GatherDep, WorkerState


def _inc(x: int) -> int:
    return x + 1


FUNC_ID, FUNC_BLOB = dumps_function(_inc)
ARGS = dumps_task_args((1,), {})[0]


# ---------------------------------------------------------------------------
# SilenceClock
# ---------------------------------------------------------------------------


def test_silence_is_counted_from_the_last_message() -> None:
    clock = SilenceClock(ttl=5.0, interval=1.0, now=100.0)
    for t in range(101, 109):
        clock.tick(float(t))
    assert not clock.expired(last_heard=103.0, now=108.0)  # 5 s exactly: not yet
    assert clock.expired(last_heard=102.5, now=108.0)
    assert clock.silent_for(last_heard=104.0, now=108.0) == 4.0


def test_the_observer_s_own_stall_is_not_the_peer_s_silence() -> None:
    """The observer's loop was blocked from 101 to 130 (a huge submission):
    what peers sent meanwhile has not been read, so their silence counts
    from 130, not from their last message."""
    clock = SilenceClock(ttl=5.0, interval=1.0, now=100.0)
    clock.tick(101.0)
    clock.tick(130.0)  # 29 s late
    assert not clock.expired(last_heard=100.5, now=130.0)
    clock.tick(131.0)
    clock.tick(135.5)  # 3.5 s late: a stall again, so 135.5 is the new start
    assert not clock.expired(last_heard=100.5, now=136.0)
    for t in (137.0, 138.0, 139.0, 140.0, 141.0):
        clock.tick(t)
    assert clock.expired(last_heard=100.5, now=141.0)


def test_a_slow_observer_still_finds_a_silent_peer() -> None:
    """Every tick 1.5 s late (a scheduler that is overloaded, not stopped):
    only the lateness is forgiven, so a silent peer is removed, later."""
    clock = SilenceClock(ttl=5.0, interval=1.0, now=0.0)
    t = 0.0
    while not clock.expired(last_heard=0.0, now=t):
        t += 2.6
        clock.tick(t)
        assert t < 60, "never expired"
    assert t > 5.0


def test_a_silence_clock_needs_a_positive_ttl() -> None:
    with pytest.raises(ValueError, match="positive"):
        SilenceClock(ttl=0, interval=1.0, now=0.0)


# ---------------------------------------------------------------------------
# what the nanny reports
# ---------------------------------------------------------------------------


def test_death_reasons_name_the_signal_or_the_exit_code() -> None:
    assert death_reason(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert death_reason(128 + signal.SIGTERM) == "ended by signal 15 (SIGTERM)"
    assert death_reason(1) == "exit code 1"
    assert "lost its scheduler" in death_reason(LOST_SCHEDULER_EXIT_CODE)


def test_killed_worker_has_dask_s_attributes_and_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(KilledWorker("f-1", "tcp://10.0.0.1:1234", 3)))
    assert (err.task, err.key, err.last_worker, err.allowed_failures) == (
        "f-1", "f-1", "tcp://10.0.0.1:1234", 3)
    assert "'f-1' on 4 different workers" in str(err)
    assert "tcp://10.0.0.1:1234" in str(err)


# ---------------------------------------------------------------------------
# a worker leaves: the others stop waiting for it
# ---------------------------------------------------------------------------


def test_the_scheduler_tells_the_other_workers_who_left() -> None:
    s = SchedulerState(validate=True)
    for name in ("w0", "w1", "w2"):
        s.add_worker(m.RegisterWorker(name, name, 1))
    s.add_client("c")
    s.take_messages()
    s.remove_worker("w1", 1.0, "it sent nothing for 15 s")
    to_workers, to_clients = s.take_messages()
    assert set(to_workers) == {"w0", "w2"}
    for msgs in to_workers.values():
        assert m.WorkersChanged(removed=["w1"]) in msgs
    assert m.WorkersChanged(removed=["w1"]) in to_clients["c"]


def test_keys_still_to_fetch_from_a_worker_that_left_are_not_waited_for() -> None:
    """y needs x1 and v needs x3, both only on p; one request per peer at a
    time, so x1 is in flight and x3 waits.  p leaves: x3 is reported
    missing at once (the scheduler recomputes it), instead of waiting for a
    request to p that would never be answered; x1 fails when the server
    drops the connection (gather_failed)."""

    def execute(key: str, dep: str, holders: list[str]) -> m.ExecuteTask:
        return m.ExecuteTask(key, FUNC_ID, ARGS, 0, [m.DependencyLocation(dep, holders, 28)])

    ws = WorkerState("w", 2, validate=True)
    ws.handle_scheduler([execute("y", "x1", ["p"])])
    assert ws.take()[1] == [GatherDep("p", ["x1"])]
    ws.handle_scheduler([execute("v", "x3", ["p"])])
    assert ws.take() == ([], [])  # p is busy with x1
    ws.handle_scheduler([m.WorkersChanged(removed=["p"])])
    msgs, instructions = ws.take()
    assert msgs == [m.DataMissing("x3", ["p"])]
    assert instructions == []
    ws.gather_failed("p")
    msgs, _ = ws.take()
    assert msgs == [m.DataMissing("x1", ["p"])]


def test_a_scheduler_heartbeat_changes_nothing_on_the_worker() -> None:
    ws = WorkerState("w", 1, validate=True)
    assert ws.handle_scheduler([m.Heartbeat()]) == []
    assert ws.take() == ([], [])


# ---------------------------------------------------------------------------
# a client back after a broken connection: reconcile what it holds
# ---------------------------------------------------------------------------


def test_reconcile_releases_reports_and_fails_what_it_must() -> None:
    """While the connection was broken the client let b go (its release was
    lost), a finished (its TaskDone was lost), and submitted x (lost too).
    It now holds a and x: b is released, a reported again, x fails with
    FutureLost instead of waiting forever."""
    from shoal.scheduler.client_sessions import reconcile

    s = SchedulerState(validate=True)
    s.add_worker(m.RegisterWorker("w0", "w0", 2))
    s.add_client("c")
    spec = [m.TaskSpec(k, FUNC_ID, ARGS, [], 0, 0, None) for k in ("a-1", "b-1")]
    s.handle_client("c", [m.SubmitTasks(spec, [m.FunctionDef(FUNC_ID, FUNC_BLOB)])], 1.0)
    run_id = s.tasks["a-1"].run_id
    s.handle_worker("w0", [m.TaskFinished("a-1", 28, "int", 0.1, run_id=run_id)], 1.0)
    s.take_messages()
    reconcile(s, "c", ["a-1", "x-1"], 2.0)
    to_workers, to_clients = s.take_messages()
    assert "b-1" not in s.tasks or s.tasks["b-1"].n_wanted == 0
    freed = [k for x in to_workers["w0"] if type(x) is m.FreeKeys for k in x.keys]
    assert freed == ["b-1"]  # it was running there: taken back
    msgs = to_clients["c"]
    done = [x for x in msgs if type(x) is m.TaskDone]
    assert [x.key for x in done] == ["a-1"]
    erred = [x for x in msgs if type(x) is m.TaskErred]
    assert [x.key for x in erred] == ["x-1"]
    assert "never received" in erred[0].text
