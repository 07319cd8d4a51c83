"""``Queue``, ``Event`` and ``Variable``: coordination between clients and
tasks, kept by the scheduler under a name (``shoal/scheduler/coordination.py``).
``Lock`` and ``Semaphore`` are in ``semaphore.py``, ``MultiLock`` in
``multilock.py``; which client an object talks through, and when a method
returns an awaitable, is decided in ``named.py``.

Objects pickle as their name (a queue with its ``maxsize``), so they can be
passed to tasks.  Values put in a queue or variable are pickled data, or
futures (their result stays on the workers and is kept while referenced).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shoal.client.future import Future
from shoal.client.named import Named, can_block, post, run, seconds, settle, sync_options
from shoal.protocol.serialize import dumps, loads


def _pack(value: Any) -> dict[str, Any]:
    if isinstance(value, Future):
        if value.cancelled():
            raise ValueError(f"{value!r} is cancelled: there is no result to share")
        return {"key": value.key}
    return {"data": dumps(value)}


def _unpack(client: Any, item: dict[str, Any]) -> Any:
    if "key" in item:
        # the scheduler registered this client's claim before answering; a new
        # future also asks where the key stands (a "done" notice may have
        # arrived before this answer was read, and been dropped)
        return Future(item["key"], client, inform=True)
    return loads(item["data"])


class Queue(Named):
    """A first-in first-out queue shared by clients and tasks:
    ``Queue(name=None, client=None, maxsize=0)``."""

    prefix = "queue"

    def __init__(self, name: str | None = None, client: Any = None, maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0 (0: unbounded), got {maxsize!r}")
        super().__init__(name, client)
        self.maxsize = maxsize
        self._registered = False
        c = self._client
        if c is not None and can_block(c):
            c._sync(self._register, c)  # as dask.distributed: made on the scheduler now

    async def _register(self, client: Any) -> None:
        """Count this object as a user of the queue (``close`` undoes it)
        and give the queue its ``maxsize`` if it is new."""
        if self._registered:
            return
        self._registered = True
        try:
            await self._ask(client, "queue_create", maxsize=self.maxsize)
        except BaseException:
            self._registered = False
            raise

    def __await__(self) -> Generator[Any, None, Queue]:
        return self._started().__await__()

    async def _started(self) -> Queue:
        client = self.client
        if client is not None:
            await settle(run(client, self._register, client))
        return self

    def put(self, value: Any, timeout: Any = None, **kwargs: Any) -> Any:
        """Add ``value`` (data or a future); waits while the queue is full
        (``TimeoutError`` after ``timeout``: seconds or "200ms")."""
        options = sync_options("put", kwargs)
        client = self._bound()
        return run(client, self._put, client, _pack(value), seconds(timeout), value, **options)

    async def _put(self, client: Any, item: dict[str, Any], timeout: float | None,
                   value: Any) -> None:
        # ``value`` is kept until the answer: a future released before the
        # scheduler took the queue's claim would take its result with it
        await self._register(client)
        await self._ask(client, "queue_put", timeout, item=item, timeout=timeout)

    def get(self, timeout: Any = None, batch: bool | int = False, **kwargs: Any) -> Any:
        """The oldest item; ``batch=True``: everything there now (a list),
        ``batch=n``: the next n items (waiting for them)."""
        options = sync_options("get", kwargs)
        if not isinstance(batch, (bool, int)) or (not isinstance(batch, bool) and batch < 0):
            raise ValueError(f"batch must be True, False or a count of items, got {batch!r}")
        client = self._bound()
        return run(client, self._get, client, seconds(timeout), batch, **options)

    async def _get(self, client: Any, timeout: float | None, batch: bool | int) -> Any:
        await self._register(client)
        items = await self._ask(client, "queue_get", timeout, timeout=timeout, batch=batch)
        values = [_unpack(client, item) for item in items]
        return values if batch is not False else values[0]

    def qsize(self, **kwargs: Any) -> Any:
        """How many items are in the queue now."""
        options = sync_options("qsize", kwargs)
        client = self._bound()
        return run(client, self._qsize, client, **options)

    async def _qsize(self, client: Any) -> int:
        await self._register(client)
        return int(await self._ask(client, "queue_qsize"))

    def close(self) -> None:
        """This object stops using the queue; when every ``Queue`` object
        that used it has closed, the scheduler deletes it with its items."""
        if self._registered:
            self._registered = False
            post(self.client, "queue_release", name=self.name)

    def __reduce__(self) -> Any:
        return (Queue, (self.name, None, self.maxsize))


class Variable(Named):
    """A named value (data or a future) shared by clients and tasks:
    ``Variable(name=None, client=None)``."""

    prefix = "variable"

    def set(self, value: Any, timeout: Any = "30 s", **kwargs: Any) -> Any:
        """Set the value.  ``timeout``: how long the scheduler waits for a
        future it does not know yet (another client's, still on its way)."""
        options = sync_options("set", kwargs)
        client = self._bound()
        return run(client, self._set, client, _pack(value), seconds(timeout), value, **options)

    async def _set(self, client: Any, item: dict[str, Any], timeout: float | None,
                   value: Any) -> None:
        # ``value`` is kept until the answer (see Queue._put)
        await self._ask(client, "variable_set", timeout, item=item, timeout=timeout)

    def get(self, timeout: Any = None, **kwargs: Any) -> Any:
        """The value; waits until one is set (``TimeoutError`` after ``timeout``)."""
        options = sync_options("get", kwargs)
        client = self._bound()
        return run(client, self._get, client, seconds(timeout), **options)

    async def _get(self, client: Any, timeout: float | None) -> Any:
        return _unpack(client, await self._ask(client, "variable_get", timeout, timeout=timeout))

    def delete(self) -> None:
        """Delete the variable, for every client (its future, if any, is released)."""
        post(self._bound(), "variable_delete", name=self.name)

    def __reduce__(self) -> Any:
        return (Variable, (self.name,))


class Event(Named):
    """A flag that tasks and clients can set, clear and wait for:
    ``Event(name=None, client=None)``."""

    prefix = "event"

    def __await__(self) -> Generator[Any, None, Event]:
        """``event = await Event("x")`` (nothing to wait for, as in dask.distributed)."""
        return self
        yield  # type: ignore[unreachable]  # a generator: ``await`` runs it and gets the event

    def set(self) -> Any:
        """Set the flag: every waiter is released."""
        client = self._bound()
        return run(client, self._send, client, "event_set")

    def clear(self) -> Any:
        """Clear the flag: waiters wait again."""
        client = self._bound()
        return run(client, self._send, client, "event_clear")

    async def _send(self, client: Any, method: str) -> None:
        await self._ask(client, method)

    def is_set(self) -> Any:
        client = self._bound()
        return run(client, self._is_set, client)

    async def _is_set(self, client: Any) -> bool:
        return bool(await self._ask(client, "event_is_set"))

    def wait(self, timeout: Any = None) -> Any:
        """True once the event is set; False if ``timeout`` passed first."""
        client = self._bound()
        return run(client, self._wait, client, seconds(timeout))

    async def _wait(self, client: Any, timeout: float | None) -> bool:
        return bool(await self._ask(client, "event_wait", timeout, timeout=timeout))

    def __reduce__(self) -> Any:
        return (Event, (self.name,))
