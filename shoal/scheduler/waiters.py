"""Requests that wait on the scheduler's event loop for a condition (an item
in a queue, a free lease, a set event), each up to its own deadline.

A blocking request (``queue_get``, ``semaphore_acquire``, ``event_wait``...)
waits without holding a thread: it parks an ``asyncio.Future`` among the
condition's ``Waiters`` and is woken, in arrival order, when the condition may
have changed.  A woken request checks again and may find another got there
first; then it waits again, and all its waits together end at the deadline
computed when the request arrived.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Waiters:
    """Futures waiting on one condition, woken in arrival order."""

    def __init__(self) -> None:
        self.futures: deque[asyncio.Future[Any]] = deque()

    def add(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        fut = loop.create_future()
        self.futures.append(fut)
        return fut

    def wake_one(self, value: Any = None) -> bool:
        """Wake the oldest waiter still waiting; False if there was none."""
        while self.futures:
            fut = self.futures.popleft()
            if not fut.done():
                fut.set_result(value)
                return True
        return False

    def wake_all(self, value: Any = None) -> None:
        while self.wake_one(value):
            pass

    def fail_all(self, exc: BaseException) -> None:
        """End every wait with ``exc`` (the thing waited on is gone)."""
        while self.futures:
            fut = self.futures.popleft()
            if not fut.done():
                fut.set_exception(exc)


def deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    """When a wait of ``timeout`` seconds starting now ends (``loop`` time)."""
    return None if timeout is None else loop.time() + timeout


async def woken(loop: asyncio.AbstractEventLoop, waiters: Waiters, deadline: float | None) -> bool:
    """Wait among ``waiters``; False if ``deadline`` passed first."""
    remaining = None if deadline is None else deadline - loop.time()
    if remaining is not None and remaining <= 0:
        return False
    try:
        await asyncio.wait_for(waiters.add(loop), remaining)
    except asyncio.TimeoutError:
        return False
    return True


async def wait(loop: asyncio.AbstractEventLoop, waiters: Waiters, deadline: float | None,
               message: str) -> None:
    """``woken``, raising ``TimeoutError(message)`` at the deadline."""
    if not await woken(loop, waiters, deadline):
        raise TimeoutError(message)
