"""``wait``, ``as_completed`` and ``fire_and_forget``."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, NamedTuple

from shoal.client import waiting_on
from shoal.client.future import Future, FutureState
from shoal.client.structure import futures_of

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Future[Any]]
    not_done: set[Future[Any]]


def _split(fs: list[Future[Any]]) -> DoneAndNotDoneFutures:
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in fs if f not in done})


def wait(fs: Any, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait until the futures are done (or the first one, with
    ``return_when=FIRST_COMPLETED``); ``TimeoutError`` after ``timeout`` s.
    ``fs``: a future, lists/dicts of them, or a persisted dask collection."""
    futures = futures_of(fs)
    if not futures:
        return DoneAndNotDoneFutures(set(), set())
    client = futures[0].client
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"unknown return_when {return_when!r}")
    if client.asynchronous and client._in_loop_thread():
        return _wait_async(futures, timeout, return_when)
    states = [f._state for f in futures]
    if return_when == FIRST_COMPLETED:
        client._wait_states(states, timeout, count=1)
    elif return_when == FIRST_EXCEPTION:
        _wait_first_exception(client, states, timeout)
    else:
        client._wait_states(states, timeout)
    return _split(futures)


async def _wait_async(futures: list[Future[Any]], timeout: float | None, return_when: str) -> Any:
    client = futures[0].client
    states = [f._state for f in futures]
    count = 1 if return_when == FIRST_COMPLETED else None
    await client._wait_states_async(states, timeout, count=count)
    return _split(futures)


def _wait_first_exception(client: Any, states: list[FutureState], timeout: float | None) -> None:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    remaining = [st for st in states if not st.done()]
    while remaining:
        if any(st.status == "error" for st in states):
            return
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        client._wait_states(remaining, left, count=1)
        remaining = [st for st in remaining if not st.done()]


def fire_and_forget(obj: Any) -> None:
    """Run these futures' tasks to completion even when no future points at
    them any more."""
    by_client: dict[int, tuple[Any, list[str]]] = {}
    for f in futures_of(obj):
        by_client.setdefault(id(f.client), (f.client, []))[1].append(f.key)
    for client, keys in by_client.values():
        client._fire_and_forget(keys)


class as_completed:
    """Iterate over futures in the order they finish.

    ``add()`` more while iterating; ``with_results=True`` yields
    ``(future, result)``; ``batches()`` yields lists of whatever is done.
    Works with ``for`` and ``async for``.
    """

    def __init__(self, futures: Iterable[Future[Any]] | None = None, loop: Any = None,
                 with_results: bool = False, raise_errors: bool = True) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._lock = threading.Condition(threading.Lock())
        self._ready: deque[Future[Any]] = deque()
        self._pending: dict[Future[Any], int] = {}
        self._async_event: asyncio.Event | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        if futures is not None:
            self.update(futures)

    # -- adding ---------------------------------------------------------------

    def add(self, future: Future[Any]) -> None:
        """Track one more future."""
        with self._lock:
            self._pending[future] = self._pending.get(future, 0) + 1
        as_c = self

        class _Notify:
            __slots__ = ()

            def state_done(self, st: FutureState) -> None:
                as_c._done(future)

        client = future.client
        with client._lock:
            registered = waiting_on.register([future._state], _Notify())
        if registered == 0:
            self._done(future)

    def update(self, futures: Iterable[Future[Any]]) -> None:
        for f in futures:
            if not isinstance(f, Future):
                raise TypeError(f"as_completed takes futures, got {type(f).__name__}")
            self.add(f)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            n = self._pending.pop(future, 0)
            for _ in range(max(n, 1)):
                self._ready.append(future)
            self._lock.notify_all()
            loop, event = self._async_loop, self._async_event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

    # -- state -----------------------------------------------------------------

    def count(self) -> int:
        """How many futures are still to be yielded."""
        with self._lock:
            return len(self._ready) + sum(self._pending.values())

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        with self._lock:
            return bool(self._ready)

    def _tracked(self) -> list[Future[Any]]:
        """The futures still to be yielded (what ``progress`` counts)."""
        with self._lock:
            return list(dict.fromkeys([*self._ready, *self._pending]))

    def clear(self) -> None:
        with self._lock:
            self._ready.clear()
            self._pending.clear()

    # -- iteration ---------------------------------------------------------------

    def _item(self, f: Future[Any]) -> Any:
        if not self.with_results:
            return f
        if f.status == "error" and not self.raise_errors:
            return f, f.exception()
        if f.status == "cancelled" and not self.raise_errors:
            return f, None
        return f, f.result()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        with self._lock:
            while not self._ready:
                if not self._pending:
                    raise StopIteration
                self._lock.wait()
            f = self._ready.popleft()
        return self._item(f)

    def next_batch(self, block: bool = True) -> list[Any]:
        with self._lock:
            while block and not self._ready and self._pending:
                self._lock.wait()
            batch = list(self._ready)
            self._ready.clear()
        return [self._item(f) for f in batch]

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
            await event.wait()
        if not self.with_results:
            return f
        if f.status == "error" and not self.raise_errors:
            return f, f.exception()
        return f, await f.client._value_of_async(f._state)
