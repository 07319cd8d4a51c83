"""The scheduler's named locks and queues (shoal/scheduler/coordination.py),
driven directly on an event loop with a real SchedulerState behind them."""

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


def test_a_lock_wait_that_keeps_losing_still_ends_at_its_timeout() -> None:
    async def main() -> None:
        co = make(asyncio.get_running_loop())
        assert await co.rpc_lock_acquire("a", "L", "t-a")
        waiting = await _ends_while_losing(
            co.rpc_lock_acquire("b", "L", "t-b", timeout=0.2),
            lambda: co.rpc_lock_acquire("a", "L", "t-a"),
            lambda: co.rpc_lock_release("a", "L", "t-a"),
        )
        assert waiting.result() is False
        assert co.locks["L"][0] == "a"

    asyncio.run(main())


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
        loop = asyncio.get_running_loop()
        co = make(loop)
        assert await co.rpc_lock_acquire("a", "L", "t-a")
        waiting = asyncio.ensure_future(co.rpc_lock_acquire("b", "L", "t-b", timeout=5))
        await asyncio.sleep(0.01)
        await co.rpc_lock_release("a", "L", "t-a")
        assert await waiting is True
        assert await co.rpc_lock_acquire("c", "M", "t-c", blocking=False)
        assert await co.rpc_lock_acquire("d", "M", "t-d", blocking=False) is False
        assert await co.rpc_event_wait("a", "E", timeout=0.01) is False

    asyncio.run(main())
