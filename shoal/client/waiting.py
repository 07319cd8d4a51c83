"""``wait``, ``as_completed`` and ``fire_and_forget``.

Semantics follow dask.distributed: futures compare by key, ``wait`` returns
sets of the futures given, and ``as_completed`` yields one item per future
*added* (a future added twice, or two futures of one key, yielded twice).  Nothing here holds a future longer than its caller does, except
an ``as_completed`` that still has it to yield: dropping the iterator (say,
after a ``break``) drops the futures it held.
"""

from __future__ import annotations

import asyncio
import itertools
import numbers
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, NamedTuple

from shoal.client import waiting_on
from shoal.client.future import CANCELLED, ERROR, Future, FutureState
from shoal.client.structure import futures_of
from shoal.errors import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Future[Any]]
    not_done: set[Future[Any]]


def _split(fs: list[Future[Any]]) -> DoneAndNotDoneFutures:
    """``(done, not_done)``; as dask does, cancelled futures among the done
    ones raise ``FuturesCancelledError``, grouped by the reason."""
    done = {f for f in fs if f.done()}
    by_reason: dict[str, list[FutureCancelledError]] = {}
    for f in done:
        if f.cancelled():
            exc = f.client._exception_of(f._state)
            if not isinstance(exc, FutureCancelledError):
                exc = FutureCancelledError(f.key, str(exc))
            by_reason.setdefault(exc.reason, []).append(exc)
    if by_reason:
        raise FuturesCancelledError([CancelledFuturesGroup(errors, reason)
                                     for reason, errors in by_reason.items()])
    return DoneAndNotDoneFutures(done, {f for f in fs if f not in done})


def _seconds(timeout: Any, caller: str) -> float | None:
    """A timeout: seconds, or a string such as ``"10s"``, as in dask."""
    if timeout is None:
        return None
    if isinstance(timeout, str):
        from shoal.units import parse_timedelta

        return parse_timedelta(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        hint = ("; to wait on several futures pass one list: wait([x, y, z]), not wait(x, y, z)"
                if caller == "wait" else "")
        raise TypeError(f"{caller}(timeout=...) takes a number of seconds or a string like "
                        f"'10s', got {type(timeout).__name__}{hint}")
    return float(timeout)


def wait(fs: Any, timeout: Any = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait until the futures are done (or the first one, with
    ``return_when=FIRST_COMPLETED``; or the first error, with
    ``FIRST_EXCEPTION``); ``TimeoutError`` after ``timeout`` s.  On an
    asynchronous client's event loop: an awaitable.
    ``fs``: a future, lists/dicts of them, or a persisted dask collection."""
    seconds = _seconds(timeout, "wait")
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"unknown return_when {return_when!r}")
    futures = futures_of(fs)
    if not futures:
        return DoneAndNotDoneFutures(set(), set())
    client = futures[0].client
    if client.asynchronous and client._in_loop_thread():
        return _wait_async(futures, seconds, return_when)
    states = [f._state for f in futures]
    if return_when == FIRST_COMPLETED:
        client._wait_states(states, seconds, count=1)
    elif return_when == FIRST_EXCEPTION:
        _wait_first_exception(client, states, seconds)
    else:
        client._wait_states(states, seconds)
    return _split(futures)


async def _wait_async(futures: list[Future[Any]], timeout: float | None, return_when: str) -> Any:
    client = futures[0].client
    states = [f._state for f in futures]
    if return_when == FIRST_EXCEPTION:
        await _wait_first_exception_async(client, states, timeout)
    else:
        count = 1 if return_when == FIRST_COMPLETED else None
        await client._wait_states_async(states, timeout, count=count)
    return _split(futures)


def _first_exception_seen(states: list[FutureState]) -> bool:
    return any(st.status == ERROR for st in states)


def _wait_first_exception(client: Any, states: list[FutureState], timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    remaining = [st for st in states if not st.done()]
    while remaining and not _first_exception_seen(states):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        client._wait_states(remaining, left, count=1)
        remaining = [st for st in remaining if not st.done()]


async def _wait_first_exception_async(client: Any, states: list[FutureState],
                                      timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    remaining = [st for st in states if not st.done()]
    while remaining and not _first_exception_seen(states):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        await client._wait_states_async(remaining, left, count=1)
        remaining = [st for st in remaining if not st.done()]


def fire_and_forget(obj: Any) -> None:
    """Run these futures' tasks to completion even when no future points at
    them any more."""
    by_client: dict[int, tuple[Any, list[str]]] = {}
    for f in futures_of(obj):
        by_client.setdefault(id(f.client), (f.client, []))[1].append(f.key)
    for client, keys in by_client.values():
        client._fire_and_forget(keys)


class _Arrival:
    """What ``as_completed`` registers on a future's state: which of its
    entries is done, told to the iterator through a weak reference.  A strong
    one (it was a class made per call, a reference cycle holding the future)
    kept every future added, and its key on the cluster, alive after the
    iterator was dropped, until the next garbage collection."""

    __slots__ = ("entry", "owner")

    def __init__(self, owner: weakref.ref[as_completed], entry: int) -> None:
        self.owner = owner
        self.entry = entry

    def state_done(self, st: FutureState) -> None:
        """Called with the client's lock held."""
        owner = self.owner()
        if owner is not None:
            owner._arrived(self.entry)


class as_completed:
    """Iterate over futures in the order they finish.

    ``add()`` more while iterating; ``with_results=True`` yields
    ``(future, result)``; ``batches()`` yields lists of whatever is done.
    Works with ``for`` and ``async for``.  Each future added is yielded once
    per ``add``.  ``timeout``: seconds from the creation of the iterator after
    which a ``next`` that would wait raises ``TimeoutError``.

    With ``with_results=True``, an erred future raises its exception, unless
    ``raise_errors=False``: then it comes as ``(future, (type, exception,
    traceback))``; a cancelled future comes as ``(future, CancelledError)``
    either way (both as in dask).
    """

    def __init__(self, futures: Iterable[Future[Any]] | None = None, loop: Any = None,
                 with_results: bool = False, raise_errors: bool = True, *,
                 timeout: Any = None) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        seconds = _seconds(timeout, "as_completed")
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._lock = threading.Condition(threading.Lock())
        self._ready: deque[Future[Any]] = deque()
        self._pending: dict[int, Future[Any]] = {}  # entry -> future, one per add()
        self._entries = itertools.count()
        self._ref = weakref.ref(self)
        self._async_event: asyncio.Event | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        if futures is not None:
            self.update(futures)

    # -- adding ---------------------------------------------------------------

    def add(self, future: Future[Any]) -> None:
        """Track one more future."""
        if not isinstance(future, Future):
            raise TypeError(f"as_completed takes futures, got {type(future).__name__}")
        with self._lock:
            entry = next(self._entries)
            self._pending[entry] = future
        client = future.client
        with client._lock:
            registered = waiting_on.register([future._state], _Arrival(self._ref, entry))
        if registered == 0:
            self._arrived(entry)

    def update(self, futures: Iterable[Future[Any]]) -> None:
        """Track several more futures."""
        futures = list(futures)
        for f in futures:
            if not isinstance(f, Future):
                raise TypeError(f"as_completed takes futures, got {type(f).__name__}")
        for f in futures:
            self.add(f)

    def _arrived(self, entry: int) -> None:
        with self._lock:
            future = self._pending.pop(entry, None)
            if future is None:
                return  # cleared meanwhile
            self._ready.append(future)
            self._lock.notify_all()
            loop, event = self._async_loop, self._async_event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                pass

    # -- state -----------------------------------------------------------------

    def count(self) -> int:
        """How many items are still to be yielded (done or not)."""
        with self._lock:
            return len(self._ready) + len(self._pending)

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        with self._lock:
            return bool(self._ready)

    def _tracked(self) -> list[Future[Any]]:
        """The futures still to be yielded, each once (what ``progress`` counts)."""
        with self._lock:
            return list(dict.fromkeys([*self._ready, *self._pending.values()]))

    def clear(self) -> None:
        """Forget every future not yielded yet."""
        with self._lock:
            self._ready.clear()
            self._pending.clear()
            self._lock.notify_all()

    def __repr__(self) -> str:
        with self._lock:
            return f"<as_completed: waiting={len(self._pending)} done={len(self._ready)}>"

    # -- iteration ---------------------------------------------------------------

    def _time_left(self) -> float | None:
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("as_completed: the timeout passed with futures still pending")
        return left

    def _failed_item(self, f: Future[Any]) -> Any:
        """``with_results`` of an erred or cancelled future: raise, or the
        item dask yields for it."""
        exc = f.client._exception_of(f._state)
        if f._state.status == CANCELLED:
            return f, exc
        if self.raise_errors:
            raise exc
        return f, (type(exc), exc, exc.__traceback__)

    def _item(self, f: Future[Any]) -> Any:
        if not self.with_results:
            return f
        if f._state.status in (ERROR, CANCELLED):
            return self._failed_item(f)
        return f, f.client._value_of(f._state)

    async def _item_async(self, f: Future[Any]) -> Any:
        if not self.with_results:
            return f
        if f._state.status in (ERROR, CANCELLED):
            return self._failed_item(f)
        return f, await f.client._value_of_async(f._state)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        with self._lock:
            while not self._ready:
                if not self._pending:
                    raise StopIteration
                self._lock.wait(self._time_left())
            f = self._ready.popleft()
        return self._item(f)

    next = __next__

    def next_batch(self, block: bool = True) -> list[Any]:
        """Everything done now (waiting for at least one, with ``block``)."""
        with self._lock:
            while block and not self._ready and self._pending:
                self._lock.wait(self._time_left())
            batch = list(self._ready)
            self._ready.clear()
        items = []
        for i, f in enumerate(batch):
            try:
                items.append(self._item(f))
            except BaseException:
                with self._lock:  # the rest stays to be yielded
                    self._ready.extendleft(reversed(batch[i + 1:]))
                raise
        return items

    def batches(self) -> Iterator[list[Any]]:
        """Yield lists of all futures done since the last one."""
        while True:
            batch = self.next_batch(block=True)
            if not batch:
                return
            yield batch

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            with self._lock:
                if self._ready:
                    f = self._ready.popleft()
                    break
                if not self._pending:
                    raise StopAsyncIteration
                if self._async_event is None:
                    self._async_loop = asyncio.get_running_loop()
                    self._async_event = asyncio.Event()
                event = self._async_event
                event.clear()
            try:
                await asyncio.wait_for(event.wait(), self._time_left())
            except asyncio.TimeoutError:
                raise TimeoutError("as_completed: the timeout passed with futures still pending") from None
        return await self._item_async(f)
