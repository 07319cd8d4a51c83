"""What shoal's named coordination objects (``Queue``, ``Event``,
``Variable``, ``Semaphore``, ``Lock``, ``MultiLock``) have in common: the
client they talk through, how a call runs for its caller, and requests sent
without waiting for the answer.

The client: the one given; else the one of the place where the object was
made or unpickled (``shoal.worker.context.get_client``: the current or
default client in a client process, the worker's client inside a task, an
actor method or a worker process); else one found at first use.  Once found
it is kept, so an object handed to another thread keeps talking through it,
unless it closes (then the next one is looked up).

A call: with an asynchronous client, a method returns an awaitable, as in
dask.distributed.  In an ``async def`` actor method too (that code runs on
the worker's event loop; the worker's client runs on a loop thread of its
own, so the call goes there and is awaited).  Otherwise the method blocks
and returns the answer.  ``asynchronous=`` and ``callback_timeout=`` are
accepted where dask.distributed accepts them.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar


def context_client() -> Any:
    """The client of this place (see the module docstring), or None."""
    from shoal.worker.context import get_client

    try:
        return get_client()
    except ValueError:
        return None


def seconds(timeout: Any) -> float | None:
    """A timeout given as seconds, ``"200ms"`` or ``None``, in seconds."""
    if timeout is None:
        return None
    from shoal.units import parse_timedelta

    return parse_timedelta(timeout)


def sync_options(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``**kwargs`` dask.distributed passes to ``client.sync``; any
    other keyword is a ``TypeError`` naming it."""
    unknown = sorted(set(kwargs) - {"asynchronous", "callback_timeout"})
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments {unknown}")
    return kwargs


def run(client: Any, coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
        asynchronous: bool | None = None, callback_timeout: Any = None) -> Any:
    """``coro_fn(*args)`` on ``client``'s loop, the way the caller can take
    it: an awaitable, or (blocking) its result."""
    from shoal.worker.context import on_worker_loop

    limit = seconds(callback_timeout)
    if client.asynchronous:
        coro = coro_fn(*args)
        return coro if limit is None else asyncio.wait_for(coro, limit)
    if on_worker_loop():
        # an async actor method: the worker's client runs on another loop
        pending = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro_fn(*args), client.loop))
        return pending if limit is None else asyncio.wait_for(pending, limit)
    return client._sync(coro_fn, *args, asynchronous=asynchronous, callback_timeout=limit)


def answer(client: Any, value: Any) -> Any:
    """``value`` as a method's answer without asking anyone: itself for a
    blocking caller, a done awaitable where ``run`` would give an awaitable."""
    from shoal.worker.context import on_worker_loop

    if client.asynchronous or on_worker_loop():
        from shoal.client.core import Ready

        return Ready(value)
    return value


def post(client: Any, method: str, **args: Any) -> None:
    """Send a request without waiting for (or reading) its answer, as
    dask.distributed's ``Queue.close`` and ``Variable.delete`` do.
    Requests of one client are handled in the order they were sent."""
    if client is None or client.status != "running":
        return
    from shoal.protocol import messages as m

    client._send(m.Request(next(client._request_ids), method, args))


def can_block(client: Any) -> bool:
    """Whether a blocking call through ``client`` is possible here (not an
    asynchronous client, not on its loop, not in an async actor method)."""
    from shoal.worker.context import on_worker_loop

    return (not client.asynchronous and client.status == "running" and not client._in_loop_thread()
            and not on_worker_loop())


async def settle(value: Any) -> Any:
    """``value``, awaited if it is awaitable (a method's answer with a
    synchronous or an asynchronous client alike)."""
    if inspect.isawaitable(value):
        return await value
    return value


class Bound:
    """An object that talks to the scheduler through a client (see the module docstring)."""

    def __init__(self, client: Any = None) -> None:
        self._given_client = client is not None
        self._client = client if client is not None else context_client()

    @property
    def client(self) -> Any:
        """The client this object talks through, or None if there is none here."""
        c = self._client
        if c is None or (not self._given_client and c.status in ("closing", "closed")):
            found = context_client()
            if found is not None:
                self._client = c = found
        return c

    def _bound(self) -> Any:
        client = self.client
        if client is None:
            raise RuntimeError(
                f"{self!r} has no client to talk through (No clients found): start a client "
                "(shoal.Client()), pass client=..., or use it inside a task or actor method")
        return client

    def _run(self, coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
             **options: Any) -> Any:
        return run(self._bound(), coro_fn, *args, **options)

    # what dask's coordination objects expose of their client
    @property
    def asynchronous(self) -> bool:
        """Whether calls return awaitables (the client is asynchronous)."""
        return bool(self._bound().asynchronous)

    @property
    def loop(self) -> Any:
        """The client's event loop."""
        return self._bound().loop

    @property
    def scheduler(self) -> Any:
        """The scheduler's requests over the client's connection."""
        return self._bound().scheduler

    def sync(self, func: Callable[..., Any], *args: Any, asynchronous: bool | None = None,
             callback_timeout: float | str | None = None, **kwargs: Any) -> Any:
        """``client.sync``: run ``func`` on the client's loop."""
        return self._bound().sync(func, *args, asynchronous=asynchronous,
                                  callback_timeout=callback_timeout, **kwargs)


class Named(Bound):
    """A coordination object the scheduler keeps under ``name``."""

    prefix: ClassVar[str] = "object"

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"the name of a {type(self).__name__} must be a str, got {name!r}")
        self.name = name or f"{self.prefix}-{uuid.uuid4().hex}"
        super().__init__(client)

    async def _ask(self, client: Any, method: str, blocking_for: float | None = None,
                   **args: Any) -> Any:
        """A request about this object; ``blocking_for``: how long the
        scheduler may make it wait (our own deadline comes a little later)."""
        wait = None if blocking_for is None else blocking_for + 5.0
        return await client._request(method, wait, name=self.name, **args)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class Acquired:
    """``with`` and ``async with`` over ``acquire()`` and ``release()`` (an
    asynchronous client's awaitables are awaited)."""

    acquire: Callable[..., Any]
    release: Callable[[], Any]

    def __enter__(self) -> Any:
        self.acquire()
        return self

    def __exit__(self, exc_type: Any = None, exc_value: Any = None, traceback: Any = None) -> None:
        self.release()

    async def __aenter__(self) -> Any:
        await settle(self.acquire())
        return self

    async def __aexit__(self, exc_type: Any = None, exc_value: Any = None,
                        traceback: Any = None) -> None:
        await settle(self.release())
