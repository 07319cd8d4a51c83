"""``Future``: a handle on a remote result, and ``FutureState``: what the client
knows about one key.

Rules (after CPython's ``concurrent.futures._base``):
1. A small fixed set of states: pending, finished, error, cancelled, lost.
   Every ``Future`` for a key shares the key's one ``FutureState``.
2. States change only on the client's event loop thread (from scheduler
   messages) or under the client's lock; anyone may read them.
3. Waiting is done through *waiters* registered under the lock, so a change
   between "is it done?" and "wake me" is never missed.  Threads wait on a
   ``threading.Event``, coroutines on an ``asyncio.Future``.
4. A ``Future`` counts as a reference: the last one for a key to be garbage
   collected tells the scheduler the client no longer wants that key.
"""

from __future__ import annotations

import asyncio
import html
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shoal.errors import FutureLost
from shoal.protocol.serialize import (
    Payload,
    collecting_dependencies,
    collecting_references,
    loads,
    loads_exception,
    loads_traceback,
    resolve_dependency,
)

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

T = TypeVar("T")

PENDING = "pending"
FINISHED = "finished"
ERROR = "error"
CANCELLED = "cancelled"
LOST = "lost"
DONE_STATES = frozenset({FINISHED, ERROR, CANCELLED})


class Waiter:
    """Wakes whoever waits once ``count`` registered states are done."""

    __slots__ = ("count", "done_states", "event", "future", "loop")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.count = count
        self.done_states: list[FutureState] = []
        self.loop = loop
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        if loop is None:
            self.event = threading.Event()
        else:
            self.future = loop.create_future()
        if count <= 0:
            self._wake()

    def state_done(self, st: FutureState) -> None:
        """Called with the client lock held."""
        self.done_states.append(st)
        self.count -= 1
        if self.count == 0:
            self._wake()

    def _wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.future is not None and self.loop is not None:
            fut = self.future
            if self.loop.is_closed():
                return
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                if not fut.done():
                    fut.set_result(None)
            else:
                self.loop.call_soon_threadsafe(_set_if_pending, fut)

    def wait(self, timeout: float | None) -> bool:
        assert self.event is not None
        return self.event.wait(timeout)


def _set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FutureState:
    __slots__ = (
        "exception",
        "key",
        "nbytes",
        "status",
        "type_name",
        "value",
        "waiters",
        "workers",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = PENDING
        self.type_name = ""
        self.nbytes = 0
        self.workers: Sequence[str] = ()  # tuples: see TaskDone.workers
        self.value: Payload | None = None
        self.exception: tuple[Payload, Payload, str] | BaseException | None = None
        self.waiters: list[Waiter] | None = None

    def done(self) -> bool:
        return self.status in DONE_STATES

    def finish(self, type_name: str, nbytes: int, workers: Sequence[str], value: Payload | None) -> None:
        """The task's result is in memory on ``workers`` (with a copy, if small)."""
        self.status = FINISHED
        self.type_name = type_name
        self.nbytes = nbytes
        self.workers = workers
        self.value = value
        self.exception = None

    def __repr__(self) -> str:
        return f"<FutureState {self.key} {self.status}>"


class Future(Generic[T]):
    """A remote result.  ``result()`` waits for it and brings it here.

    Futures compare and hash by key, as dask's do (its ``Future`` is a dask
    ``TaskRef``): two futures of one key (the same pure call submitted twice)
    stand for one task.  ``as_completed`` still yields a future once per
    time it was added, as dask's does."""

    __slots__ = ("__weakref__", "_id", "_state", "client", "key")

    def __init__(self, key: str, client: Client | None = None, state: FutureState | None = None,
                 _id: str | None = None, *, inform: bool = True) -> None:
        """A handle on ``key`` held through ``client`` (default: this place's
        client; inside a task or actor method, the worker's).  ``state`` and
        ``_id`` are dask's internal arguments: a ``state`` given must be the
        client's own for this key; ``_id`` names this handle."""
        if client is None:
            from shoal.worker.context import get_client

            client = get_client()
        self.key = key
        self.client = client
        self._id = _id
        self._state = client._acquire_key(key, inform)
        if state is not None and state is not self._state:
            self.release()
            raise ValueError(f"Future({key!r}, state=...): the state given is not this client's "
                             "state of the key (shoal keeps one state per key per client)")

    # -- status ----------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._state.status

    def done(self) -> bool:
        return self._state.done()

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    @property
    def type(self) -> Any:
        """The type of the result, as in dask (``int``, ``numpy.ndarray``...)
        once it is known; the type's name when that type cannot be imported
        here; None before."""
        name = self._state.type_name
        if not name:
            return None
        return _resolve_type(name)

    def bind_client(self, client: Client) -> None:
        """Hold this future through ``client`` (dask's: for a future
        unpickled without one)."""
        if self.client is client:
            return
        old = self.client
        self.client = client
        self._state = client._acquire_key(self.key, True)
        if old is not None:
            old._release_key(self.key)

    def substitute(self, subs: dict[Any, Any], key: Any = None) -> Any:
        """dask's ``TaskRef.substitute``: what ``subs`` maps this key to, or
        this future."""
        return subs.get(self.key, self)

    @property
    def executor(self) -> Client:
        return self.client

    # -- results ---------------------------------------------------------------

    def result(self, timeout: float | None = None) -> T:
        """Wait for the result and return it; re-raise the task's exception.
        On an asynchronous client's event loop: an awaitable."""
        if self._awaitable_here():
            return self._result_async(timeout)  # type: ignore[return-value]
        self.client._wait_states([self._state], timeout)
        return self.client._value_of(self._state, timeout)  # type: ignore[no-any-return]

    async def _result_async(self, timeout: float | None = None) -> T:
        await self.client._wait_states_async([self._state], timeout)
        return await self.client._value_of_async(self._state)  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the task raised, or None (an awaitable on an
        asynchronous client's event loop)."""
        if self._awaitable_here():
            return self._exception_async(timeout)  # type: ignore[return-value]
        self.client._wait_states([self._state], timeout)
        return self._exception_now()

    async def _exception_async(self, timeout: float | None) -> BaseException | None:
        await self.client._wait_states_async([self._state], timeout)
        return self._exception_now()

    def _exception_now(self) -> BaseException | None:
        st = self._state
        if st.status == CANCELLED:
            raise self.client._exception_of(st)
        if st.status == ERROR:
            return self.client._exception_of(st)
        return None

    def traceback(self, timeout: float | None = None) -> Any:
        """The traceback of the task's exception (a traceback object), or None
        (an awaitable on an asynchronous client's event loop)."""
        if self._awaitable_here():
            return self._traceback_async(timeout)
        self.client._wait_states([self._state], timeout)
        return self._traceback_now()

    async def _traceback_async(self, timeout: float | None) -> Any:
        await self.client._wait_states_async([self._state], timeout)
        return self._traceback_now()

    def _traceback_now(self) -> Any:
        st = self._state
        if st.status != ERROR:
            return None
        return self.client._exception_of(st).__traceback__

    def _awaitable_here(self) -> bool:
        """Whether the blocking calls should hand back an awaitable instead:
        on the event loop of an asynchronous client, where blocking would
        stop the loop that brings the answer (as in dask, where they return
        coroutines on an asynchronous client)."""
        client = self.client
        return bool(client.asynchronous and client._in_loop_thread())

    def __await__(self) -> Generator[Any, None, T]:
        return self._result_async().__await__()

    # -- control ---------------------------------------------------------------

    def cancel(self, reason: str | None = None, msg: str | None = None, **kwargs: Any) -> Any:
        """Cancel this future; see ``Client.cancel``, which ``kwargs``
        (``force``, ``asynchronous``) go to (an awaitable for an asynchronous
        client)."""
        client: Any = self.client  # the full Client (cancel is a mixin's)
        return client.cancel([self], reason=reason, msg=msg, **kwargs)

    def retry(self) -> Any:
        """Run this failed future again; see ``Client.retry`` (an awaitable
        for an asynchronous client)."""
        client: Any = self.client
        return client.retry([self])

    def release(self) -> None:
        """Drop this handle's reference now instead of at garbage collection."""
        client, self.client = self.client, None
        if client is not None:
            client._release_key(self.key)

    def add_done_callback(self, fn: Callable[[Future[T]], Any]) -> None:
        """Call ``fn(self)`` once the future is done, on a separate thread."""
        self.client._add_done_callback(self, fn)

    def __del__(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client._release_key(self.key)
            except Exception:  # interpreter shutdown
                pass

    # -- misuse ----------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Future objects are not callable; use .result() to get the value")

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a Future is ambiguous; use .done() or .result()"
        )

    def __iter__(self) -> Any:
        raise TypeError("a Future is not iterable; use .result() to get the value first")

    # -- pickling: inside task arguments a future becomes its value ------------

    def __reduce__(self) -> Any:
        deps = collecting_dependencies()
        if deps is not None:
            deps.add(self.key)
            return (resolve_dependency, (self.key,))
        refs = collecting_references()
        if refs is not None:
            refs.add(self.key)
        return (_rebuild_future, (self.key,))

    def __dask_tokenize__(self) -> tuple[str, str]:
        """dask's token: one key, one token, for every handle on it (dask
        hashes graphs that hold futures, a persisted collection's do)."""
        return ("shoal.Future", self.key)

    # -- display ---------------------------------------------------------------

    def __repr__(self) -> str:
        st = self._state
        name = _key_name(self.key)
        if st.status == FINISHED:
            return f"<Future: {name} status: finished, type: {_short_type(st.type_name)}, key: {self.key}>"
        if st.status == ERROR:
            exc = self.client._exception_of(st) if self.client is not None else None
            kind = type(exc).__name__ if exc is not None else "Exception"
            return f"<Future: {name} status: error, type: {kind}, key: {self.key}>"
        return f"<Future: {name} status: {st.status}, key: {self.key}>"

    def _repr_html_(self) -> str:
        st = self._state
        color = {FINISHED: "green", ERROR: "red", CANCELLED: "gray", LOST: "orange"}.get(st.status, "black")
        type_part = f", <b>type:</b> {html.escape(_short_type(st.type_name))}"
        return (
            f"<b>Future: {html.escape(_key_name(self.key))}</b> "
            f'<span style="color: var(--jp-ui-font-color2, {color})">status: {st.status}</span>'
            f"{type_part}, <b>key:</b> {html.escape(self.key)}"
        )

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.key == self.key


_BUILTIN_TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bytearray, bool, list,
                                         tuple, dict, set, frozenset, type(None), object, range,
                                         slice, memoryview)}


def _resolve_type(name: str) -> Any:
    """``"int"`` -> ``int``; ``"numpy.ndarray"`` -> the class, if importable
    here without side effects beyond importing its module; else the name."""
    if name in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[name]
    module, _, qualname = name.rpartition(".")
    mod = sys.modules.get(module)  # only modules this process already has
    if mod is None:
        return name
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return name
    return obj if isinstance(obj, type) else name


def _rebuild_future(key: str) -> Future[Any]:
    return Future(key)


def _key_name(key: str) -> str:
    from shoal.scheduler.records import key_prefix

    return key_prefix(key)


def _short_type(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1] if type_name else "NoneType"


def value_of_state(st: FutureState) -> Any:
    """The value of a finished state whose result came inline."""
    assert st.value is not None
    return loads(st.value)


def exception_of_state(st: FutureState) -> BaseException:
    """The task's exception, rebuilt afresh on every call.  One object kept
    here and raised would keep the frames it was raised through, and the
    Future in them: the state would hold its own future, which then could
    never be released (an erred key stayed on the scheduler for good)."""
    exc = st.exception
    if isinstance(exc, BaseException):
        return exc
    if exc is None:
        return FutureLost(f"no exception recorded for {st.key!r}")
    return loads_exception(*exc)


__all__ = ["Future", "FutureState", "Waiter", "exception_of_state", "loads_traceback", "value_of_state"]
