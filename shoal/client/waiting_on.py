"""Waiting on futures' states: waiters registered under the client's lock,
so a state finishing between "is it done?" and "wake me" is never missed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shoal.client.future import Future, FutureState, Waiter
from shoal.comm.spin import spin_if_waiting

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

logger = logging.getLogger("shoal.client")


def register(states: list[FutureState], waiter: Any) -> int:
    """With the lock held: attach ``waiter`` to the states not done yet."""
    n = 0
    for st in states:
        if st.done():
            continue
        n += 1
        if st.waiters is None:
            st.waiters = [waiter]
        else:
            st.waiters.append(waiter)
    return n


def unregister(client: Client, states: list[FutureState], waiter: Any) -> None:
    with client._lock:
        for st in states:
            if st.waiters and waiter in st.waiters:
                st.waiters.remove(waiter)


def _arm(client: Client, states: list[FutureState], count: int | None,
         loop: asyncio.AbstractEventLoop | None = None) -> tuple[Waiter, list[FutureState], int] | None:
    """A waiter for ``count`` (default: all) of ``states``, registered with
    the ones not done yet, and how many it waits for; None if enough are
    done already."""
    with client._lock:
        pending = [st for st in states if not st.done()]
        if not pending:
            return None
        need = len(pending) if count is None else max(0, count - (len(states) - len(pending)))
        if need <= 0:
            return None
        waiter = Waiter(need, loop)
        register(pending, waiter)
    return waiter, pending, need


def wait_states(
    client: Client, states: list[FutureState], timeout: float | None, count: int | None = None
) -> None:
    """Block until ``count`` (default: all) of ``states`` are done."""
    if len(states) == 1:
        # result() of one future: poll its state before arming a waiter, so
        # a result that comes within the window needs no Event, and the
        # loop thread that delivers it has nobody to wake (see spin.py)
        spin_if_waiting(states[0].done, timeout)
    armed = _arm(client, states, count)
    if armed is None:
        return
    waiter, pending, need = armed
    if len(states) > 1:  # many: poll the waiter, which counts them
        assert waiter.event is not None
        spin_if_waiting(waiter.event.is_set, timeout)
    if not waiter.wait(timeout):
        unregister(client, pending, waiter)
        raise TimeoutError(f"{need} futures were not done within {timeout} s")


async def wait_states_async(
    client: Client, states: list[FutureState], timeout: float | None, count: int | None = None
) -> None:
    armed = _arm(client, states, count, asyncio.get_running_loop())
    if armed is None:
        return
    waiter, pending, need = armed
    assert waiter.future is not None
    try:
        await asyncio.wait_for(waiter.future, timeout)
    except asyncio.TimeoutError:
        unregister(client, pending, waiter)
        raise TimeoutError(f"{need} futures were not done within {timeout} s") from None


class _DoneCallback:
    """What ``add_done_callback`` registers on a future's state.  A plain
    slotted object, not a class made per call: such a class is a reference
    cycle, and it kept the future (and its key on the cluster) alive after
    the callback had run, until the next garbage collection."""

    __slots__ = ("client", "fn", "future")

    def __init__(self, client: Client, fn: Callable[[Future[Any]], Any], future: Future[Any]) -> None:
        self.client = client
        self.fn = fn
        self.future = future

    def state_done(self, st: FutureState) -> None:
        run_callback(self.client, self.fn, self.future)


def add_done_callback(
    client: Client, future: Future[Any], fn: Callable[[Future[Any]], Any]
) -> None:
    with client._lock:
        if register([future._state], _DoneCallback(client, fn, future)) == 0:
            run_callback(client, fn, future)


def run_callback(client: Client, fn: Callable[[Future[Any]], Any], future: Future[Any]) -> None:
    def run() -> None:
        try:
            fn(future)
        except Exception:
            logger.exception("error in done-callback %r of %s", fn, future.key)

    in_callback_thread(client, run)


def in_callback_thread(client: Client, fn: Callable[[], Any]) -> None:
    """With the lock held: run ``fn()`` on the client's callback thread (one
    thread, started on first use); nothing once the client has closed."""
    if client._callback_executor is None:
        client._callback_executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-callback")
    try:
        client._callback_executor.submit(fn)
    except RuntimeError:  # executor shut down with the client
        pass
