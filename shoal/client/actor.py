"""Actors: a stateful object living on one worker, called directly.

``client.submit(Counter, actor=True).result()`` is an ``Actor`` proxy.
Calling a method sends ``ActorCall`` straight to the worker that holds the
instance (the scheduler is not involved) and returns an ``ActorFuture`` at
once; reading an attribute returns its value.  A worker runs one actor call
at a time per actor-thread, so an actor's methods never run concurrently.

A proxy works wherever it is unpickled: in a client process it uses the
default client's event loop; inside a task it uses its worker's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import Any

from shoal.client.loop import running_on
from shoal.comm.spin import spin_if_waiting
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads, loads_exception


def _io_context() -> tuple[asyncio.AbstractEventLoop, Any]:
    """The event loop and connection pool to reach workers from here."""
    from shoal.worker.executor import current_task

    task = current_task()
    if task is not None and task[0] is not None:
        worker = task[0]
        return worker.loop, worker.pool
    from shoal.client.core import default_client

    client = default_client()
    assert client.loop is not None
    return client.loop, client.pool


def _hold(key: str) -> Any:
    """In a client process, a proxy holds a future for its actor, so the actor
    lives as long as some proxy or future points at it."""
    from shoal.worker.executor import current_task

    if current_task() is not None:
        return None
    from shoal.client import core

    client = core._default_client
    if client is None or client.status != "running":
        return None
    from shoal.client.future import Future

    return Future(key, client)


class ActorFuture:
    """The pending result of an actor method call."""

    __slots__ = ("_future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> Any:
        spin_if_waiting(self._future.done, timeout)
        try:
            reply = self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the actor did not answer within {timeout} s") from None
        return _unpack(reply)

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await().__await__()

    async def _await(self) -> Any:
        reply = await asyncio.wrap_future(self._future)
        return _unpack(reply)

    def __repr__(self) -> str:
        return f"<ActorFuture {'done' if self.done() else 'pending'}>"


def _unpack(reply: m.ActorReply) -> Any:
    if reply.ok:
        return loads(reply.value) if reply.value is not None else None
    assert reply.exception is not None
    exc = loads_exception(reply.exception, reply.traceback, reply.text)
    raise exc


class Actor:
    """A handle on an object living on a worker."""

    def __init__(self, cls: type, key: str, address: str) -> None:
        self._cls = cls
        self._key = key
        self._address = address
        self._future = _hold(key)


    def __reduce__(self) -> Any:
        return (Actor, (self._cls, self._key, self._address))

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self._key}>"

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})

    def _send(self, name: str, kind: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
              ) -> concurrent.futures.Future[Any]:
        loop, pool = _io_context()
        payload = dumps((args, kwargs or {})) if kind == "call" else None
        msg = m.ActorCall(pool.next_id(), self._key, name, payload, kind)
        conn = pool.open_connection(self._address)
        if conn is not None and not running_on(loop):
            # straight onto the socket from this thread: no wake-up of the loop
            sent: concurrent.futures.Future[Any] = conn.request_from_thread(msg)
            return sent
        return asyncio.run_coroutine_threadsafe(pool.request(self._address, msg), loop)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._cls, name, None)
        if callable(attr):
            def method(*args: Any, **kwargs: Any) -> ActorFuture:
                return ActorFuture(self._send(name, "call", args, kwargs))

            method.__name__ = name
            return method
        # an attribute: its current value
        return ActorFuture(self._send(name, "getattr")).result()
