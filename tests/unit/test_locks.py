"""Semaphores, locks and multi-locks on the scheduler: the pure bookkeeping
(shoal/scheduler/semaphores.py, multilocks.py) driven directly, and the
extension that waits (shoal/scheduler/locks.py) on an event loop with a real
SchedulerState behind it."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.scheduler.locks import Locks
from shoal.scheduler.multilocks import MultiLocks
from shoal.scheduler.semaphores import Semaphores
from shoal.scheduler.state import SchedulerState

# -- semaphores --------------------------------------------------------------------------


def test_leases_up_to_the_maximum_and_idempotent_acquire() -> None:
    s = Semaphores()
    assert s.try_acquire("db", 2, "l1", "client-a")
    assert s.try_acquire("db", 2, "l1", "client-a")  # the same lease again: nothing more taken
    assert s.try_acquire("db", 2, "l2", "client-b")
    assert not s.try_acquire("db", 2, "l3", "client-a")
    assert s.value("db") == 2
    assert s.release("db", "l1") and not s.release("db", "l1")  # a second release finds nothing
    assert s.try_acquire("db", 2, "l3", "client-a")


def test_a_name_keeps_its_max_leases() -> None:
    s = Semaphores()
    s.register("x", 1)
    with pytest.raises(ValueError, match="Inconsistent max leases"):
        s.try_acquire("x", 3, "l1", "client-a")
    with pytest.raises(ValueError, match="positive"):
        s.register("y", 0)


def test_leases_end_with_their_holder_or_its_silence() -> None:
    s = Semaphores()
    s.try_acquire("a", 3, "l1", "gone")
    s.try_acquire("a", 3, "l2", "quiet")
    s.try_acquire("a", 3, "l3", "chatty")
    assert s.holder_left("gone") == [("a", "l1")]
    # "quiet" last spoke at 10, "chatty" at 39; at 41 with a 30 s timeout only "quiet" is silent
    assert s.expire({"quiet": 10.0, "chatty": 39.0}, now=41.0, timeout=30.0) == [("a", "l2")]
    assert s.value("a") == 1
    assert s.close("a") == ["l3"] and s.value("a") == 0


# -- multi-locks -------------------------------------------------------------------------


def test_all_or_nothing_and_a_partial_count() -> None:
    ml = MultiLocks()
    assert ml.request("r1", "c1", ["a", "b"], None)
    assert not ml.request("r2", "c2", ["b", "c"], None)  # waits, holding c meanwhile
    assert ml.queues["c"][0] == "r2"
    assert not ml.request("r3", "c3", ["c", "d"], None)
    assert ml.request("r4", "c4", ["a", "d", "e"], 1)  # one free one is enough: e (or d)
    assert ml.release("r1") == ["r2"]
    assert ml.granted("r2") and ml.requests["r2"].held == {"b", "c"}


def test_a_granted_partial_request_leaves_the_queues_it_does_not_need() -> None:
    ml = MultiLocks()
    assert ml.request("x", "c1", ["a"], None)
    assert ml.request("y", "c1", ["b"], None)
    assert not ml.request("z", "c2", ["a", "b"], 1)
    assert ml.release("x") == ["z"]
    assert list(ml.queues["b"]) == ["y"]  # z stopped waiting for b
    assert ml.release("y") == []
    assert "b" not in ml.queues


def test_bad_requests_are_refused_clearly() -> None:
    ml = MultiLocks()
    with pytest.raises(ValueError, match="at least one"):
        ml.request("r", "c", [], None)
    with pytest.raises(ValueError, match="num_locks"):
        ml.request("r", "c", ["a", "a"], 2)  # one distinct name
    with pytest.raises(TypeError, match="list of str"):
        ml.request("r", "c", "ab", None)  # type: ignore[arg-type]
    assert ml.request("r", "c", ["a"], None)
    with pytest.raises(ValueError, match="already"):
        ml.request("r", "c", ["b"], None)


NAMES = ["a", "b", "c", "d"]


class MultiLockMachine(RuleBasedStateMachine):
    """Random requests, releases and departures of holders: each lock has at
    most one holder, granted requests hold exactly what they asked for, and
    the oldest waiting request waits only for granted ones (so waiting
    multi-locks never wait for each other in a circle)."""

    def __init__(self) -> None:
        super().__init__()
        self.ml = MultiLocks()
        self.ids = itertools.count()
        self.arrival: dict[str, int] = {}

    @rule(names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
          holder=st.sampled_from(["c1", "c2", "c3"]), partial=st.booleans(), data=st.data())
    def request(self, names: list[str], holder: str, partial: bool, data: st.DataObject) -> None:
        n = next(self.ids)
        num = data.draw(st.integers(1, len(names))) if partial else None
        self.arrival[f"r{n}"] = n
        self.ml.request(f"r{n}", holder, names, num)

    @precondition(lambda self: self.ml.requests)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.ml.release(data.draw(st.sampled_from(sorted(self.ml.requests))))

    @rule(holder=st.sampled_from(["c1", "c2", "c3"]))
    def holder_leaves(self, holder: str) -> None:
        self.ml.holder_left(holder)

    @invariant()
    def consistent(self) -> None:
        ml = self.ml
        for name, queue in ml.queues.items():
            assert queue and len(set(queue)) == len(queue)
            assert name in ml.requests[queue[0]].held
            for rid in list(queue)[1:]:
                assert name not in ml.requests[rid].held
        for rid, req in ml.requests.items():
            assert all(ml.queues[n][0] == rid for n in req.held)
            if req.granted:
                assert len(req.held) == req.needed
                assert all(rid not in ml.queues.get(n, ()) for n in req.names if n not in req.held)
            else:
                assert len(req.held) < req.needed

    @invariant()
    def the_oldest_waiter_waits_only_for_granted_requests(self) -> None:
        waiting = [r for r, req in self.ml.requests.items() if not req.granted]
        if not waiting:
            return
        oldest = min(waiting, key=self.arrival.__getitem__)
        for name in self.ml.requests[oldest].names:
            head = self.ml.queues[name][0]
            assert head == oldest or self.ml.requests[head].granted


TestMultiLockMachine = MultiLockMachine.TestCase
TestMultiLockMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


# -- the extension: waiting, timeouts, holders that go ------------------------------------


def make(loop: asyncio.AbstractEventLoop, clients: list[str]) -> Locks:
    state = SchedulerState()
    for c in clients:
        state.add_client(c, 0.0)
    server = SimpleNamespace(state=state, loop=loop, client_comms=dict.fromkeys(clients),
                             status="running", _spawn=lambda coro: coro.close())
    return Locks(server)  # type: ignore[arg-type]


async def started(coro) -> asyncio.Future[object]:  # type: ignore[no-untyped-def]
    """``coro`` running as a task, up to where it first waits."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    return task


def test_a_waiting_acquire_gets_the_lease_a_release_frees() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["a", "b"])
        assert await locks.rpc_semaphore_acquire("a", "L", 1, "la")
        waiting = await started(locks.rpc_semaphore_acquire("b", "L", 1, "lb", timeout=5))
        assert not waiting.done()
        assert await locks.rpc_semaphore_release("a", "L", "la")
        assert await waiting is True
        assert locks.semaphores.records["L"].leases == {"lb": "b"}
        assert await locks.rpc_semaphore_acquire("a", "L", 1, "lc", timeout=0) is False
        assert await locks.rpc_semaphore_release("a", "L", "la") is False  # not held any more

    asyncio.run(main())


def test_a_holder_that_leaves_frees_its_leases_for_the_waiters() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["a", "b"])
        assert await locks.rpc_semaphore_acquire("a", "S", 2, "l1")
        assert await locks.rpc_semaphore_acquire("a", "S", 2, "l2")
        waiting = await started(locks.rpc_semaphore_acquire("b", "S", 2, "l3", timeout=5))
        del locks.server.client_comms["a"]
        locks.client_left("a")
        assert await waiting is True
        assert await locks.rpc_semaphore_value("b", "S") == 1

    asyncio.run(main())


def test_a_lease_granted_after_its_holder_left_goes_back_at_once() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["a", "b", "c"])
        assert await locks.rpc_semaphore_acquire("a", "S", 1, "la")
        gone = await started(locks.rpc_semaphore_acquire("b", "S", 1, "lb", timeout=5))
        after = await started(locks.rpc_semaphore_acquire("c", "S", 1, "lc", timeout=5))
        del locks.server.client_comms["b"]
        locks.client_left("b")  # b waits still, for a lease nobody could release
        await locks.rpc_semaphore_release("a", "S", "la")
        assert await gone is False
        assert await after is True

    asyncio.run(main())


def test_silent_holders_lose_their_leases() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["quiet", "chatty"])
        locks.lease_timeout = 30.0
        assert await locks.rpc_semaphore_acquire("quiet", "S", 1, "l1")
        waiting = await started(locks.rpc_semaphore_acquire("chatty", "S", 1, "l2", timeout=5))
        locks.server.state.clients["chatty"].last_seen = 35.0
        locks.expire_silent(now=36.0)  # quiet: silent since 0
        assert await waiting is True

    asyncio.run(main())


def test_closing_a_semaphore_fails_its_waiters() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["a", "b"])
        assert await locks.rpc_semaphore_acquire("a", "S", 1, "l1")
        waiting = await started(locks.rpc_semaphore_acquire("b", "S", 1, "l2", timeout=5))
        await locks.rpc_semaphore_close("a", "S")
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
        assert await locks.rpc_semaphore_acquire("b", "S", 2, "l3")  # the name is free again

    asyncio.run(main())


def test_multi_lock_waits_times_out_and_is_freed_by_its_holder_leaving() -> None:
    async def main() -> None:
        locks = make(asyncio.get_running_loop(), ["a", "b", "c"])
        assert await locks.rpc_multi_lock_acquire("a", ["x", "y"], "ra")
        assert await locks.rpc_multi_lock_acquire("b", ["y", "z"], "rb", timeout=0) is False
        assert "rb" not in locks.multilocks.requests and "z" not in locks.multilocks.queues
        waiting = await started(locks.rpc_multi_lock_acquire("c", ["y"], "rc", timeout=5))
        del locks.server.client_comms["a"]
        locks.client_left("a")
        assert await waiting is True
        await locks.rpc_multi_lock_release("c", "rc")
        assert locks.multilocks.queues == {}
        with pytest.raises(ValueError, match="holds no locks"):
            await locks.rpc_multi_lock_release("c", "rc")

    asyncio.run(main())
