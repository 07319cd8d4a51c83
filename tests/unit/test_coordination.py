"""The scheduler's named queues, events and variables
(shoal/scheduler/coordination.py), driven directly on an event loop with a
real SchedulerState behind them.  Locks: test_locks.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from shoal.scheduler.coordination import Coordination
from shoal.scheduler.state import SchedulerState


def make(loop: asyncio.AbstractEventLoop) -> Coordination:
    server = SimpleNamespace(state=SchedulerState(), loop=loop, _schedule_flush=lambda: None)
    return Coordination(server)  # type: ignore[arg-type]


async def _churn(until: float, take, give) -> int:  # type: ignore[no-untyped-def]
    """Release and take back at once, again and again: whoever is woken by
    the release finds the lock (or the slot) gone when it gets to run."""
    loop = asyncio.get_running_loop()
    rounds = 0
    while loop.time() < until:
        await asyncio.sleep(0.01)
        await give()
        await take()  # in the same step as the release: the woken waiter loses
        rounds += 1
    return rounds


async def _ends_while_losing(waiter, take, give) -> asyncio.Future[object]:  # type: ignore[no-untyped-def]
    """Run ``waiter`` against a churn of give/take; it must end (timed out)
    while the churn still goes on, not when it stops."""
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(waiter)
    churn = asyncio.ensure_future(_churn(loop.time() + 5.0, take, give))
    done, _ = await asyncio.wait([waiting, churn], return_when=asyncio.FIRST_COMPLETED)
    churn.cancel()
    assert waiting in done and not churn.done()  # it gave up while losing, not after
    return waiting


def test_a_queue_put_that_keeps_losing_still_ends_at_its_timeout() -> None:
    async def main() -> None:
        co = make(asyncio.get_running_loop())
        await co.rpc_queue_create("a", "Q", maxsize=1)
        await co.rpc_queue_put("a", "Q", {"data": 1})
        putting = await _ends_while_losing(
            co.rpc_queue_put("b", "Q", {"data": 2}, timeout=0.2),
            lambda: co.rpc_queue_put("a", "Q", {"data": 1}),
            lambda: co.rpc_queue_get("a", "Q"),
        )
        err = putting.exception()
        assert isinstance(err, TimeoutError) and "stayed full" in str(err)

    asyncio.run(main())


def test_waits_without_contention_still_succeed() -> None:
    async def main() -> None:
        co = make(asyncio.get_running_loop())
        getting = asyncio.ensure_future(co.rpc_queue_get("b", "Q", timeout=5))
        await asyncio.sleep(0)  # the getter waits
        await co.rpc_queue_put("a", "Q", {"data": 1})
        assert await getting == [{"data": 1}]
        assert await co.rpc_event_wait("a", "E", timeout=0.01) is False
        waiting = asyncio.ensure_future(co.rpc_event_wait("b", "E", timeout=5))
        await asyncio.sleep(0)
        await co.rpc_event_set("a", "E")
        assert await waiting is True

    asyncio.run(main())


def test_closing_the_last_queue_object_deletes_it_and_fails_its_waiters() -> None:
    async def main() -> None:
        co = make(asyncio.get_running_loop())
        await co.rpc_queue_create("a", "Q", maxsize=0)
        await co.rpc_queue_create("b", "Q", maxsize=0)
        getting = asyncio.ensure_future(co.rpc_queue_get("c", "Q", timeout=5))
        await asyncio.sleep(0)
        await co.rpc_queue_release("a", "Q")  # one of two objects closed: still there
        assert "Q" in co.queues and not getting.done()
        await co.rpc_queue_release("b", "Q")
        assert "Q" not in co.queues
        err = await asyncio.wait_for(asyncio.gather(getting, return_exceptions=True), 5)
        assert isinstance(err[0], RuntimeError) and "closed" in str(err[0])

    asyncio.run(main())


def test_a_future_the_scheduler_never_heard_of_times_out_by_its_key() -> None:
    async def main() -> None:
        co = make(asyncio.get_running_loop())
        try:
            await co.rpc_variable_set("a", "V", {"key": "never-submitted"}, timeout=0.05)
        except TimeoutError as e:
            assert "never-submitted" in str(e)
        else:
            raise AssertionError("expected TimeoutError")
        assert "V" not in co.variables

    asyncio.run(main())
