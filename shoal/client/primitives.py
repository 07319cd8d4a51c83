"""``Queue``, ``Lock``, ``Event`` and ``Variable``: coordination between
clients and tasks, kept by the scheduler under a name (see
``shoal/scheduler/coordination.py``).

Each object talks through a client: the one given, else, inside a task, its
worker's client, else the default client.  Objects pickle as their name, so
they can be passed to tasks.  Values put in a queue or variable are pickled
data, or futures (their result stays on the workers and is kept while
referenced).
"""

from __future__ import annotations

import uuid
from typing import Any

from shoal.client.future import Future
from shoal.protocol.serialize import dumps, loads


def _client(client: Any) -> Any:
    if client is not None:
        return client
    from shoal.worker.context import get_client

    return get_client()


def _pack(value: Any) -> dict[str, Any]:
    if isinstance(value, Future):
        return {"key": value.key}
    return {"data": dumps(value)}


def _unpack(client: Any, item: dict[str, Any]) -> Any:
    if "key" in item:
        # the scheduler registered this client's claim before answering; a new
        # future also asks where the key stands (a "done" notice may have
        # arrived before this answer was read, and been dropped)
        return Future(item["key"], client, inform=True)
    return loads(item["data"])


class _Named:
    prefix = "object"

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        self.name = name or f"{self.prefix}-{uuid.uuid4().hex}"
        self._client_obj = client

    @property
    def client(self) -> Any:
        return _client(self._client_obj)

    def _call(self, method: str, blocking_for: float | None = None, **args: Any) -> Any:
        """A request about this object; ``blocking_for``: how long the scheduler
        may make it wait (our own deadline comes a little later)."""
        client = self.client
        wait = None if blocking_for is None else blocking_for + 5.0
        return client._sync(client._request, method, wait, name=self.name, **args)

    def __reduce__(self) -> Any:
        return (type(self), (self.name,))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class Queue(_Named):
    """A first-in first-out queue shared by clients and tasks."""

    prefix = "queue"

    def __init__(self, name: str | None = None, client: Any = None, maxsize: int = 0) -> None:
        super().__init__(name, client)
        self.maxsize = maxsize
        if client is not None or maxsize:
            self._call("queue_create", maxsize=maxsize)

    def put(self, value: Any, timeout: float | None = None) -> None:
        """Add ``value`` (data or a future); waits while the queue is full."""
        self._call("queue_put", timeout, item=_pack(value), timeout=timeout)

    def get(self, timeout: float | None = None, batch: bool | int = False) -> Any:
        """The oldest item; ``batch=True``: everything now, ``batch=n``: n items."""
        client = self.client
        items = self._call("queue_get", timeout, timeout=timeout, batch=batch)
        values = [_unpack(client, item) for item in items]
        return values if batch is not False else values[0]

    def qsize(self) -> int:
        return int(self._call("queue_qsize"))


class Variable(_Named):
    """A named value (data or a future) shared by clients and tasks."""

    prefix = "variable"

    def set(self, value: Any) -> None:
        self._call("variable_set", item=_pack(value))

    def get(self, timeout: float | None = None) -> Any:
        """The value; waits until one is set."""
        return _unpack(self.client, self._call("variable_get", timeout, timeout=timeout))

    def delete(self) -> None:
        self._call("variable_delete")


class Event(_Named):
    """A flag that tasks and clients can set, clear and wait for."""

    prefix = "event"

    def set(self) -> None:
        self._call("event_set")

    def clear(self) -> None:
        self._call("event_clear")

    def is_set(self) -> bool:
        return bool(self._call("event_is_set"))

    def wait(self, timeout: float | None = None) -> bool:
        """True once the event is set; False if ``timeout`` passed first."""
        return bool(self._call("event_wait", timeout, timeout=timeout))


class Lock(_Named):
    """A lock held by one Lock object at a time, across the cluster.  A lock
    whose holder's connection goes away is released."""

    prefix = "lock"

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        super().__init__(name, client)
        self._token = uuid.uuid4().hex

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return bool(self._call("lock_acquire", timeout, token=self._token, blocking=blocking,
                               timeout=timeout))

    def release(self) -> None:
        self._call("lock_release", token=self._token)

    def locked(self) -> bool:
        return bool(self._call("lock_locked"))

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
