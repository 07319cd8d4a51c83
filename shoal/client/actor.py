"""Actors: a stateful object living on one worker, called directly.

``client.submit(Counter, actor=True).result()`` is an ``Actor`` handle.
Calling a method sends ``ActorCall`` straight to the worker that holds the
instance (the scheduler is not involved) and returns an ``ActorFuture`` at
once; reading an attribute returns its value.  A worker runs its actors'
methods on one actor thread, so an actor's methods never run concurrently
(``async def`` methods run on the worker's event loop).

Where a handle talks from (decided when it is made or unpickled, see
``_bind``):

- in a client process: through its client (the current or default one);
- inside a worker (a task, an actor method, or any thread of a worker
  process): through the worker's own connections to its peers;
- an actor method calling an actor of the same worker, on the actor thread,
  calls it in place: a message would wait for the actor thread, which is
  busy running the caller.

Where waiting would block the event loop that delivers the answer (with an
asynchronous client, or in an ``async def`` actor method), attribute reads
return an awaitable and ``ActorFuture.result()`` refuses: use ``await``.

A handle holds a future of its actor through its client (in a worker, the
worker's client), so the actor lives while some handle or future points at
it.  A handle inside ``submit``'s arguments is a dependency of the task, as
a future is: the actor is kept while the task waits, and the task receives
a handle of its own.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Generator
from typing import Any, Generic, TypeVar

from shoal.client.loop import running_on
from shoal.comm.spin import spin_if_waiting
from shoal.protocol import messages as m
from shoal.protocol.serialize import (
    collecting_dependencies,
    dumps,
    loads,
    loads_exception,
    resolve_dependency,
)

T = TypeVar("T")


class BaseActorFuture(abc.ABC, Awaitable[T], Generic[T]):
    """The pending result of an actor method call: ``result(timeout)``,
    ``done()``, ``await``."""

    __slots__ = ()

    @abc.abstractmethod
    def result(self, timeout: float | str | None = None) -> T: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    def __repr__(self) -> str:
        return f"<ActorFuture {'done' if self.done() else 'pending'}>"


class ActorFuture(BaseActorFuture[T]):
    """The answer to a call sent to an actor's worker, delivered on ``loop``."""

    __slots__ = ("_future", "_loop", "_raw")

    def __init__(self, future: concurrent.futures.Future[Any], loop: asyncio.AbstractEventLoop,
                 raw: bool = False) -> None:
        self._future = future
        self._loop = loop
        self._raw = raw  # the future holds the value itself, not an ActorReply

    def result(self, timeout: float | str | None = None) -> T:
        from shoal.units import parse_timedelta

        seconds = None if timeout is None else parse_timedelta(timeout)
        fut = self._future
        if not fut.done() and running_on(self._loop):
            raise RuntimeError(
                "ActorFuture.result() would block the event loop that delivers the answer: "
                "use `await` (in an async def actor method, or with an asynchronous client)")
        spin_if_waiting(fut.done, seconds)
        try:
            value = fut.result(seconds)
        except concurrent.futures.TimeoutError:
            if fut.done():
                raise  # the method itself raised TimeoutError
            raise TimeoutError(f"the actor did not answer within {seconds} s") from None
        return self._value(value)

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    async def _await(self) -> T:
        return self._value(await asyncio.wrap_future(self._future))

    def _value(self, value: Any) -> T:
        if self._raw:
            return value  # type: ignore[no-any-return]
        return _unpack(value)  # type: ignore[no-any-return]


class EagerActorFuture(BaseActorFuture[T]):
    """The outcome of a call made in place (an actor calling an actor of its
    own worker): done from the start."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value = value
        self._error = error

    def result(self, timeout: float | str | None = None) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    def done(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, T]:
        return self.result()
        yield  # type: ignore[unreachable]  # a generator: ``await`` runs it and gets the value


def _unpack(reply: m.ActorReply) -> Any:
    if reply.ok:
        return loads(reply.value) if reply.value is not None else None
    assert reply.exception is not None
    raise loads_exception(reply.exception, reply.traceback, reply.text)


class Actor:
    """A handle on an object living on a worker (``Actor(cls, address, key,
    worker=None)`` as in dask.distributed; made by ``submit(..., actor=True)``)."""

    # a worker's store unpickles a handle afresh for each task that reads it,
    # so each holds its actor while it runs (see SpillBuffer in worker/spill.py)
    _unpickle_per_read = True

    def __init__(self, cls: type, address: str, key: str, worker: Any = None) -> None:
        self._cls = cls
        self._address = address
        self._key = key
        self._worker = worker  # the worker to talk through, inside a worker
        self._client: Any = None
        self._future: Any = None  # holds the actor while this handle exists
        self._bind()

    @classmethod
    def _unbound(cls, actor_cls: type, address: str, key: str) -> Actor:
        """A handle bound to nothing: the one a worker pickles when it creates
        the actor (it must not claim the key itself)."""
        self = object.__new__(cls)
        self._cls, self._address, self._key = actor_cls, address, key
        self._worker = self._client = self._future = None
        return self

    def _bind(self) -> None:
        """Find the worker (inside one) and client this handle talks through,
        and hold the actor with a future of the client."""
        from shoal.worker.context import current_worker, get_client

        if self._worker is None:
            self._worker = current_worker()
        if self._client is not None:
            return
        try:
            client = get_client()
        except ValueError:
            return  # bound on first use, or an error then
        from shoal.client.future import Future

        self._client = client
        if client.status == "running":
            self._future = Future(self._key, client)

    @property
    def key(self) -> str:
        return self._key

    @property
    def client(self) -> Any:
        """The client this handle uses (ValueError if there is none here)."""
        if self._client is None:
            self._bind()
        if self._client is None:
            raise ValueError(f"{self!r} has no client: make a client first (shoal.Client())")
        return self._client

    def __reduce__(self) -> Any:
        deps = collecting_dependencies()
        if deps is not None:  # in submit's arguments: a dependency, like a future
            deps.add(self._key)
            return (resolve_dependency, (self._key,))
        return (Actor, (self._cls, self._address, self._key))

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self._key}>"

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        future = self._future
        if future is not None and future.status not in ("finished", "pending"):
            raise RuntimeError(f"Worker holding Actor was lost.  Status: {future.status}")
        instance = self._in_place()
        if instance is not None:
            return _call_in_place(instance, name, self._worker)
        attr = getattr(self._cls, name, None)
        if callable(attr):
            @functools.wraps(attr)
            def method(*args: Any, **kwargs: Any) -> ActorFuture[Any]:
                return self._send(name, "call", args, kwargs)

            return method
        read = self._send(name, "getattr")
        if self._awaiting(read._loop):
            return read
        return read.result()

    def _in_place(self) -> Any:
        """The instance, when this is its worker's actor thread."""
        from shoal.worker.context import on_actor_thread

        worker = self._worker
        if worker is None or worker.address != self._address or not on_actor_thread(worker):
            return None
        return worker.actors.get(self._key)

    def _awaiting(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the caller must await (an asynchronous client, or code on
        the loop that would deliver the answer)."""
        client = self._client
        return running_on(loop) or (client is not None and self._worker is None and client.asynchronous)

    def _route(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        """The event loop and connection pool to reach the actor's worker."""
        worker = self._worker
        if worker is not None and worker.status == "running":
            return worker.loop, worker.pool
        if self._client is None:
            self._bind()
        client = self.client
        if client.status != "running":
            raise RuntimeError(f"{self!r}: its client is {client.status}")
        return client.loop, client.pool

    def _send(self, name: str, kind: str, args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None) -> ActorFuture[Any]:
        loop, pool = self._route()
        payload = dumps((args, kwargs or {})) if kind == "call" else None
        msg = m.ActorCall(pool.next_id(), self._key, name, payload, kind)
        conn = pool.open_connection(self._address)
        if conn is not None and not running_on(loop):
            # straight onto the socket from this thread: no wake-up of the loop
            return ActorFuture(conn.request_from_thread(msg), loop)
        return ActorFuture(asyncio.run_coroutine_threadsafe(pool.request(self._address, msg), loop), loop)


def _call_in_place(instance: Any, name: str, worker: Any) -> Any:
    """``instance.name`` for an actor method calling an actor of its own
    worker: attributes are read, methods run now (``async def`` ones on the
    worker's loop), each giving a future as a remote call would."""
    attr = getattr(instance, name)
    if not callable(attr):
        return attr

    def method(*args: Any, **kwargs: Any) -> BaseActorFuture[Any]:
        try:
            value = attr(*args, **kwargs)
        except Exception as e:
            return EagerActorFuture(error=e)
        if asyncio.iscoroutine(value):
            import contextvars

            ctx = contextvars.copy_context()  # still this worker's actor context
            fut = asyncio.run_coroutine_threadsafe(_in_context(ctx, value), worker.loop)
            return ActorFuture(fut, worker.loop, raw=True)
        return EagerActorFuture(value)

    return functools.wraps(attr)(method)


async def _in_context(ctx: Any, coro: Any) -> Any:
    """Await ``coro`` in a task running in context ``ctx``."""
    return await ctx.run(asyncio.ensure_future, coro)
