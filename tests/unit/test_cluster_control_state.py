"""Cluster control in the pure parts: ``control_state.release_all``
(``client.restart``), ``set_retiring`` and a graceful removal
(``retire_workers``), ``drop_replicas`` (``rebalance``, ``replicate``), the
copy plans of ``shoal.scheduler.replicas``, and the worker state's ``copies_received``.
Each docstring states the real-life scenario."""

from __future__ import annotations

from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload
from shoal.scheduler import control_state, replicas
from shoal.scheduler.invariants import check_invariants
from shoal.scheduler.records import MEMORY, NO_WORKER, PROCESSING, TaskRecord, WorkerRecord
from shoal.scheduler.state import SchedulerState
from shoal.worker.state import MEMORY as WORKER_MEMORY
from shoal.worker.state import WorkerState
from tests.unit.test_scheduler_state import finished, make_state, of_type, scattered, spec, submit


def copy_to(s: SchedulerState, worker: str, *keys: str) -> None:
    """``worker`` fetched copies of ``keys`` and announced them."""
    s.handle_worker(worker, [m.ReplicasAdded(list(keys), [28] * len(keys))], 2.0)


# ---------------------------------------------------------------------------
# client.restart: release_all
# ---------------------------------------------------------------------------


def test_restart_forgets_every_task_and_tells_every_client() -> None:
    """Two clients have work in every state (a chain in memory and running,
    a queued map, a task no worker may run, scattered data) when one of them
    calls ``client.restart()``.  Every record must be forgotten, every
    client told which of its keys were cancelled and why, and the workers
    told to drop their data and runs."""
    s = make_state(1, clients=("c", "c2"))
    submit(s, "c", spec("a-1"), spec("b-1", deps=("a-1",)))
    finished(s, "w0", "a-1")
    submit(s, "c", *(spec(f"m-{i}") for i in range(5)))  # one slot: the rest queue
    submit(s, "c2", spec("b-1", deps=("a-1",)), spec("only-1", workers=["elsewhere"]))
    scattered(s, "c2", "data-1", ["w0"])
    assert s.tasks["only-1"].state is NO_WORKER
    s.take_messages()

    control_state.release_all(s, "the cluster restarted", 3.0)

    assert s.tasks == {} and not s.unrunnable
    assert all(not c.wants for c in s.clients.values())
    assert s.workers["w0"].processing == {} and s.workers["w0"].has_what == set()
    to_workers, to_clients = s.take_messages()
    told = {c: {k for msg in of_type(msgs, m.TasksCancelled) for k in msg.keys}
            for c, msgs in to_clients.items()}
    assert told == {"c": {"a-1", "b-1", *(f"m-{i}" for i in range(5))},
                    "c2": {"b-1", "only-1", "data-1"}}
    assert {msg.reason for msgs in to_clients.values() for msg in msgs} == {"the cluster restarted"}
    freed = {k for msg in of_type(to_workers["w0"], m.FreeKeys) for k in msg.keys}
    assert {"a-1", "data-1"} <= freed  # data dropped, runs abandoned
    check_invariants(s)


def test_work_submitted_after_a_restart_runs_with_the_functions_already_sent() -> None:
    """A client sends each function once (it remembers what it sent); after
    a restart it submits the same function again without the definition.
    The scheduler must still know it."""
    s = make_state(1)
    submit(s, "c", spec("a-1"))
    control_state.release_all(s, "restart", 2.0)
    s.handle_client("c", [m.SubmitTasks([spec("a-2")], [])], 3.0)  # no FunctionDef this time
    assert s.tasks["a-2"].state is PROCESSING
    check_invariants(s)


# ---------------------------------------------------------------------------
# retire_workers: set_retiring and a graceful removal
# ---------------------------------------------------------------------------


def test_a_retiring_worker_gets_no_new_tasks() -> None:
    """While w0 retires, new work goes to w1 only."""
    s = make_state(2)
    control_state.set_retiring(s, "w0", True, 1.0)
    submit(s, "c", *(spec(f"t-{i}") for i in range(4)))
    assert all(ts.processing_on is s.workers["w1"] for ts in s.tasks.values() if ts.state is PROCESSING)
    assert s.workers["w0"].processing == {}
    check_invariants(s)


def test_a_retired_worker_leaving_does_not_count_against_its_tasks() -> None:
    """A task running on a retiring worker goes elsewhere when the worker
    leaves, without counting as a suspected worker killer (a graceful exit
    is not a crash); a crash still counts."""
    s = make_state(2)
    submit(s, "c", spec("t-1", workers=["w0"]), spec("t-2", workers=["w1"]))
    s.tasks["t-1"].restrictions.loose = True  # type: ignore[union-attr]
    control_state.set_retiring(s, "w0", True, 1.0)
    s.remove_worker("w0", 2.0)
    assert s.tasks["t-1"].suspicious == 0 and s.tasks["t-1"].processing_on is s.workers["w1"]
    s.remove_worker("w1", 3.0)  # a crash
    assert s.tasks["t-2"].suspicious == 1
    check_invariants(s)


def test_a_retirement_given_up_lets_waiting_tasks_run_there_again() -> None:
    """Tasks that only the retiring worker may run wait (no-worker) and run
    there once the retirement is given up (the data could not move)."""
    s = make_state(1)
    control_state.set_retiring(s, "w0", True, 1.0)
    submit(s, "c", spec("t-1", workers=["w0"]))
    assert s.tasks["t-1"].state is NO_WORKER
    control_state.set_retiring(s, "w0", False, 2.0)
    assert s.tasks["t-1"].state is PROCESSING and s.workers["w0"].status == "running"
    check_invariants(s)


# ---------------------------------------------------------------------------
# rebalance / replicate: drop_replicas
# ---------------------------------------------------------------------------


def test_a_moved_result_is_dropped_only_where_another_copy_exists() -> None:
    """``rebalance`` copies x from w0 to w1 and then drops w0's copy: w0 is
    told, who_has names w1 alone.  Dropping the last copy is refused (the
    result would be lost)."""
    s = make_state(2)
    submit(s, "c", spec("x-1", workers=["w0"]))
    finished(s, "w0", "x-1")
    copy_to(s, "w1", "x-1")
    assert [w.address for w in s.tasks["x-1"].who_has] == ["w0", "w1"]
    s.take_messages()
    assert control_state.drop_replicas(s, "w0", ["x-1"], 3.0) == ["x-1"]
    assert [w.address for w in s.tasks["x-1"].who_has] == ["w1"]
    to_workers, _ = s.take_messages()
    assert of_type(to_workers["w0"], m.FreeKeys) == [m.FreeKeys(["x-1"])]
    assert control_state.drop_replicas(s, "w1", ["x-1"], 4.0) == []  # the last copy
    assert [w.address for w in s.tasks["x-1"].who_has] == ["w1"]
    check_invariants(s)


def test_releasing_a_replicated_result_frees_every_copy() -> None:
    """After ``replicate``, releasing the future frees the data on every worker."""
    s = make_state(3)
    submit(s, "c", spec("x-1", workers=["w0"]))
    finished(s, "w0", "x-1")
    copy_to(s, "w1", "x-1")
    copy_to(s, "w2", "x-1")
    s.take_messages()
    s.handle_client("c", [m.ReleaseKeys(["x-1"])], 3.0)
    to_workers, _ = s.take_messages()
    assert {w for w, msgs in to_workers.items() if m.FreeKeys(["x-1"]) in msgs} == {"w0", "w1", "w2"}
    assert "x-1" not in s.tasks
    check_invariants(s)


# ---------------------------------------------------------------------------
# the plans (replicas.py)
# ---------------------------------------------------------------------------


def held(*sizes: int, on: WorkerRecord, start: int = 0) -> list[TaskRecord]:
    out = []
    for i, size in enumerate(sizes, start):
        ts = TaskRecord(f"k-{i}", b"f", b"", i)
        ts.state = MEMORY
        ts.nbytes = size
        ts.who_has = (on,)
        on.has_what.add(ts)
        on.nbytes += size
        out.append(ts)
    return out


def test_rebalance_plan_evens_out_bytes_without_overshooting() -> None:
    """Ten equal results on one of two workers: five move.  One big result
    stays where it is (moving it would only flip the imbalance)."""
    a, b = WorkerRecord("a", "a", 1), WorkerRecord("b", "b", 1)
    held(*[100] * 10, on=a)
    moves = replicas.plan_rebalance([a, b])
    assert len(moves) == 5 and all(giver is a and taker is b for giver, taker, _ in moves)
    c, d = WorkerRecord("c", "c", 1), WorkerRecord("d", "d", 1)
    held(1000, on=c)
    assert replicas.plan_rebalance([c, d]) == []


def test_rebalance_plan_moves_only_the_keys_asked_for_and_is_repeatable() -> None:
    a, b, c = (WorkerRecord(x, x, 1) for x in "abc")
    tasks = held(*[10] * 6, 50, on=a)
    allowed = tasks[:2]
    moves = replicas.plan_rebalance([a, b, c], allowed)
    assert {ts.key for _, _, ts in moves} == {"k-0", "k-1"}
    assert {taker.address for _, taker, _ in moves} == {"b", "c"}  # spread, not stacked
    assert replicas.plan_rebalance([a, b, c], allowed) == moves


def test_replicate_plan_grows_as_a_tree_and_trims_extra_copies() -> None:
    """n=4 copies from one: the first round makes at most branching_factor
    copies per existing copy; copies beyond n are trimmed from the fullest
    holders."""
    ws = [WorkerRecord(f"w{i}", f"w{i}", 1) for i in range(5)]
    (ts,) = held(100, on=ws[0])
    first = replicas.plan_copies([ts], ws, 4, branching_factor=2)
    assert sum(len(t) for t in first.values()) == 2
    assert all(holders == [ws[0]] for t in first.values() for holders in t.values())
    for w in first:
        ts.who_has = (*ts.who_has, w)
    assert sum(len(t) for t in replicas.plan_copies([ts], ws, 4, 2).values()) == 1
    ts.who_has = tuple(ws)
    trim = replicas.plan_trim([ts], ws, 2)
    assert sum(len(t) for t in trim.values()) == 3


def test_evacuation_moves_only_data_held_by_retiring_workers_alone() -> None:
    a, b, c = (WorkerRecord(x, x, 1) for x in "abc")
    alone = held(10, 10, on=a)
    shared = held(10, on=a, start=5)[0]
    shared.who_has = (a, c)
    c.has_what.add(shared)
    assert replicas.unique_data([a]) == alone
    assert replicas.unique_data([a, c]) == [*alone, shared]
    plan = replicas.plan_evacuation(replicas.unique_data([a]), [b, c])
    assert sorted(w.address for w in plan) == ["b", "c"]  # spread by load


def test_workers_to_close_picks_idle_workers_holding_least() -> None:
    ws = [WorkerRecord(f"w{i}", f"w{i}", 1, memory_limit=1000) for i in range(3)]
    held(300, on=ws[0])
    held(10, on=ws[1], start=1)
    busy = TaskRecord("busy-1", b"f", b"", 9)
    ws[2].processing[busy] = 1.0
    assert replicas.workers_to_close(ws, n=1) == [ws[1]]
    assert replicas.workers_to_close(ws, target=1) == [ws[1], ws[0]]
    assert replicas.workers_to_close(ws, n=2, minimum=2) == [ws[1]]
    # default: keep twice the data held in memory limits (here: any idle one may go)
    assert replicas.workers_to_close(ws) == [ws[1], ws[0]]


# ---------------------------------------------------------------------------
# the worker's side: copies_received
# ---------------------------------------------------------------------------


def test_worker_keeps_and_announces_copies_but_not_keys_it_is_computing() -> None:
    """A worker asked to copy x, y, z: x is new, y is here already, z is
    being computed here.  x and y are kept and announced; z is left to its run."""
    w = WorkerState("w", 1, validate=True)
    w.handle_scheduler([m.ExecuteTask("z-1", b"f", Payload(b""), 0)])
    w.data_put({"y-1": 5}, {})
    assert w.accepts_copy("x-1") and w.accepts_copy("y-1") and not w.accepts_copy("z-1")
    w.take()
    kept = w.copies_received({"x-1": 7, "y-1": 5, "z-1": 9}, {"x-1": "int"})
    assert kept == ["x-1", "y-1"]
    assert w.tasks["x-1"].state is WORKER_MEMORY and w.nbytes == 12
    msgs, _ = w.take()
    assert msgs == [m.ReplicasAdded(["x-1", "y-1"], [7, 5])]
    w.free_keys(["x-1"])  # the scheduler may free it like any result
    assert "x-1" not in w.tasks and w.nbytes == 5
