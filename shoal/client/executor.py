"""``ClientExecutor``: the standard library's ``concurrent.futures.Executor``
on a shoal cluster (``client.get_executor()``), as dask.distributed has it.

Code written for ``ThreadPoolExecutor`` or ``ProcessPoolExecutor`` runs on the
cluster unchanged: ``submit`` and ``map`` return real
``concurrent.futures.Future`` objects (a subclass that changes ``cancel``
only), so ``concurrent.futures.wait``, ``as_completed`` and
``asyncio.wrap_future`` work on them as on any other.

Rules:
1. No thread, asyncio task or request per call.  Each call's ``FutureState``
   gets a waiter (``_Call``), as ``wait`` would register; when the scheduler's
   answer lands (on the client's event loop, under its lock) the waiter only
   queues the call.  The client's callback thread then completes the queued
   calls' futures, a batch per hand-off: small results are unpickled from the
   copy that came with the answer, large ones fetched from their workers
   together.
2. A call's outcome is copied into its ``concurrent.futures.Future``, then
   its shoal future is released: the cluster forgets the key at once, whether
   or not the caller keeps the future.
3. ``cancel()`` succeeds only for a call no worker has been given yet, and
   the scheduler decides that in one step (``cancel_unstarted``), so True
   means the call never runs.  A call a worker holds counts as running (as
   ``ProcessPoolExecutor`` counts the calls it sent to its processes): its
   ``cancel()`` says False, and ``running()`` True, from then on.
4. Whatever blocks (``cancel()``, ``shutdown(wait=True)``, fetching a large
   result) waits on the client's event loop, so it never runs on that loop's
   own thread.

Data flow::

    submit / map --build_specs (the function pickled once)--> client._submit_specs
    TaskDone / TaskErred / TasksCancelled --> FutureState --> _Call.state_done
        --> ready queue --(client's callback thread)--> set_result / set_exception /
            cancelled --> shoal future released
    cancel() / shutdown(cancel_futures=True) --Request "cancel_unstarted"--> scheduler
        --> the keys it cancelled
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from shoal.client import tasks, transfer, waiting_on
from shoal.client.future import ERROR, FINISHED, Future, FutureState, exception_of_state
from shoal.errors import CancelledError, CommClosedError
from shoal.protocol.serialize import Payload, loads

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

logger = logging.getLogger("shoal.client")

P = ParamSpec("P")
T = TypeVar("T")

#: ``Client.submit`` keywords an executor applies to every call
SUBMIT_OPTIONS = ("workers", "resources", "retries", "priority", "allow_other_workers", "pure",
                  "fifo_timeout")
#: seconds the scheduler has to answer a cancellation
CANCEL_TIMEOUT = 60.0


@dataclass(frozen=True)
class SubmitOptions:
    """What every call of one executor is submitted with."""

    workers: list[str] | None = None
    resources: dict[str, float] | None = None
    retries: int | None = None
    priority: int = 0
    allow_other_workers: bool = False
    pure: bool = False


def submit_options(kwargs: dict[str, Any]) -> SubmitOptions:
    """Check ``get_executor``'s keywords; a TypeError or ValueError names a wrong one."""
    unknown = sorted(set(kwargs) - set(SUBMIT_OPTIONS))
    if unknown:
        raise TypeError(f"unsupported arguments to ClientExecutor: {unknown} "
                        f"(it takes {', '.join(SUBMIT_OPTIONS)})")
    workers = kwargs.get("workers")
    if isinstance(workers, str):
        workers = [workers]
    elif workers is not None:
        if not isinstance(workers, (list, tuple, set, frozenset)) or not all(
                isinstance(w, str) for w in workers):
            raise TypeError(f"workers= takes an address or name, or a list of them; got {workers!r}")
        workers = list(workers)
    resources = kwargs.get("resources")
    if resources is not None and not (isinstance(resources, dict) and all(
            isinstance(k, str) and _is_number(v) for k, v in resources.items())):
        raise TypeError(f"resources= takes a dict of names to amounts; got {resources!r}")
    retries = kwargs.get("retries")
    if retries is not None and not _is_int(retries):
        raise TypeError(f"retries= takes an int; got {retries!r}")
    if retries is not None and retries < 0:
        raise ValueError(f"retries= must be 0 or more; got {retries}")
    priority = kwargs.get("priority", 0)
    if not _is_int(priority):
        raise TypeError(f"priority= takes an int; got {priority!r}")
    for name in ("allow_other_workers", "pure"):
        if not isinstance(kwargs.get(name, False), bool):
            raise TypeError(f"{name}= takes True or False; got {kwargs[name]!r}")
    fifo_timeout = kwargs.get("fifo_timeout")
    if fifo_timeout is not None and not isinstance(fifo_timeout, (str, timedelta)) and not _is_number(
            fifo_timeout):
        raise TypeError(f"fifo_timeout= takes a duration; got {fifo_timeout!r}")
    return SubmitOptions(workers, resources, retries, priority,
                         kwargs.get("allow_other_workers", False), kwargs.get("pure", False))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class ExecutorFuture(cf.Future[T]):
    """A ``concurrent.futures.Future`` of a call a ``ClientExecutor`` runs.
    Only ``cancel`` differs: it asks the scheduler (module rule 3)."""

    def __init__(self, call: _Call) -> None:
        super().__init__()
        self._shoal_call: _Call | None = call

    def cancel(self) -> bool:
        """Cancel the call unless a worker has it already; True if it is
        cancelled (it will never run), False once it runs or is done."""
        with self._condition:
            state = self._state
        if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            return True
        call = self._shoal_call
        if state != PENDING or call is None:
            return False
        call.executor._cancel_calls([call])
        return self.cancelled()


class _Call:
    """One submitted call: its shoal future, held until its outcome is in
    ``cf_future``.  Registered as a waiter on the future's state."""

    __slots__ = ("cf_future", "executor", "future")

    def __init__(self, executor: ClientExecutor, future: Future[Any]) -> None:
        self.executor = executor
        self.future: Future[Any] | None = future
        self.cf_future: ExecutorFuture[Any] = ExecutorFuture(self)

    def state_done(self, st: FutureState) -> None:
        """The state is done; called with the client's lock held."""
        self.executor._queue_done(self)

    def pending(self) -> bool:
        """Not settled, and nobody started or cancelled it."""
        fut = self.cf_future
        with fut._condition:
            return fut._state == PENDING and self.future is not None

    def started(self) -> None:
        """A worker has the call: it runs (or ran), as far as cancel() goes."""
        fut = self.cf_future
        with fut._condition:
            if fut._state == PENDING:
                fut.set_running_or_notify_cancel()

    def succeed(self, value: Any) -> None:
        try:
            self.cf_future.set_result(value)
        except cf.InvalidStateError:  # cancelled meanwhile
            pass

    def fail(self, exc: BaseException) -> None:
        try:
            self.cf_future.set_exception(exc)
        except cf.InvalidStateError:
            pass

    def dropped(self, exc: BaseException) -> None:
        """The cluster dropped the call: cancelled if it had not started,
        else failed with ``exc``.  Safe to call twice, from two threads."""
        fut = self.cf_future
        with fut._condition:
            state = fut._state
        if state == PENDING and cf.Future.cancel(fut):
            with fut._condition:
                if fut._state == CANCELLED:  # not yet told to wait() and as_completed()
                    fut.set_running_or_notify_cancel()
        elif state not in (CANCELLED, CANCELLED_AND_NOTIFIED):
            self.fail(exc)


class ClientExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` that runs calls on a shoal cluster.

    ``ClientExecutor(client, **submit_options)``, or ``client.get_executor(...)``:
    the options (``workers``, ``resources``, ``retries``, ``priority``,
    ``allow_other_workers``, ``pure``, ``fifo_timeout``) apply to every call.
    Calls are impure unless ``pure=True``: an executor runs every call it is
    given.  See the module docstring for how its futures complete."""

    def __init__(self, client: Client, **kwargs: Any) -> None:
        self._client = client
        self._options = submit_options(kwargs)
        self._shutdown = False
        # submit vs shutdown; taken before the client's lock, never under it
        self._submit_lock = threading.Lock()
        # _calls, _done_calls, _draining; innermost: taken under the client's lock
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()  # submitted, outcome not copied yet
        self._done_calls: deque[_Call] = deque()  # their state is done: to copy
        self._draining = False
        # one cancellation at a time, so that two never disagree about a key
        self._cancel_lock = threading.RLock()

    # ------------------------------------------------------------------ submitting

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Run ``fn(*args, **kwargs)`` on the cluster; a future of its result."""
        return self._submit(fn, [args], kwargs)[0]

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Generator[T, None, None]:
        """``map(fn, *iterables)`` on the cluster: the calls are submitted now
        (at most ``buffersize`` ahead of the results read, if given), the
        results come in order.  Iterating raises ``TimeoutError`` once
        ``timeout`` seconds have passed since this call, and the first
        exception of a call; either way the calls not read are cancelled.
        ``chunksize`` has no effect: every call is its own task already."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not _is_int(chunksize) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1; got {chunksize!r}")
        if buffersize is not None and not _is_int(buffersize):
            raise TypeError(f"buffersize must be an integer or None; got {buffersize!r}")
        if buffersize is not None and buffersize < 1:
            raise ValueError(f"buffersize must be None or > 0; got {buffersize}")
        args = zip(*iterables)
        first = list(args if buffersize is None else islice(args, buffersize))
        futures = self._submit(fn, first, {})
        return self._results(fn, deque(futures), None if buffersize is None else args, deadline)

    def _submit(self, fn: Callable[..., Any], all_args: list[tuple[Any, ...]],
                kwargs: dict[str, Any]) -> list[cf.Future[Any]]:
        if not callable(fn):
            raise TypeError(f"the first argument must be a callable; got {fn!r}")
        self._check_open()
        if not all_args:
            return []
        o = self._options
        specs = tasks.build_specs(fn, all_args, kwargs, None, o.pure, o.workers, o.resources,
                                  o.retries, o.priority, o.allow_other_workers, False)
        client = self._client
        with self._submit_lock:
            self._check_open()
            calls = [_Call(self, f) for f in client._submit_specs(*specs)]
            with self._lock:
                self._calls.update(calls)
            with client._lock:
                for call in calls:
                    assert call.future is not None
                    if waiting_on.register([call.future._state], call) == 0:
                        self._queue_done(call)  # a pure key this client had already
        return [call.cf_future for call in calls]

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _results(self, fn: Callable[..., T], pending: deque[cf.Future[T]],
                 more: Iterator[tuple[Any, ...]] | None, deadline: float | None
                 ) -> Generator[T, None, None]:
        try:
            while pending:
                if more is not None:
                    args = next(more, None)
                    if args is not None:
                        pending.extend(self._submit(fn, [args], {}))
                # not kept in a local: the caller alone holds a result it was given
                yield _result_or_cancel(pending.popleft(), deadline)
        finally:
            try:
                self._cancel_calls([c for f in pending if (c := _call_of(f)) is not None])
            except RuntimeError:  # closed on the client's loop thread: they run to the end
                logger.debug("map results dropped on the event loop thread; calls not cancelled")

    # ------------------------------------------------------------------ completing

    def _queue_done(self, call: _Call) -> None:
        """With the client's lock held: ``call``'s state is done; have the
        callback thread copy the outcome (one hand-off per batch)."""
        with self._lock:
            self._done_calls.append(call)
            if self._draining:
                return
            self._draining = True
        waiting_on.in_callback_thread(self._client, self._drain)

    def _drain(self) -> None:
        """On the client's callback thread: complete the queued calls."""
        while True:
            with self._lock:
                if not self._done_calls:
                    self._draining = False
                    return
                batch = list(self._done_calls)
                self._done_calls.clear()
            try:
                self._complete(batch)
            except Exception as e:  # a bug: fail the calls rather than hang their callers
                logger.exception("could not complete %d executor futures", len(batch))
                for call in batch:
                    call.fail(e)

    def _complete(self, batch: list[_Call]) -> None:
        client = self._client
        ready: list[tuple[_Call, FutureState, str, Payload | None]] = []
        with client._lock:  # what each state says now, read at once
            for call in batch:
                assert call.future is not None
                st = call.future._state
                if st.done():
                    ready.append((call, st, st.status, st.value))
                else:  # lost with its worker, or retried, since: wait again
                    waiting_on.register([st], call)
        remote: list[tuple[_Call, FutureState]] = []
        for call, st, status, value in ready:
            if status == FINISHED and value is None:
                remote.append((call, st))
            else:
                _settle(call, st, status, value)
        if remote:
            payloads = self._fetch([st for _, st in remote])
            for call, st in remote:
                _settle(call, st, FINISHED, payloads[st.key])
        self._forget([call for call, *_ in ready])

    def _fetch(self, states: list[FutureState]) -> dict[str, Payload | BaseException]:
        """Large results from their workers, together; an error stays with
        the keys it concerns."""
        try:
            return dict(self._on_loop(transfer.fetch, self._client, states))
        except Exception as e:
            if len(states) == 1:
                return {states[0].key: e}
            out: dict[str, Payload | BaseException] = {}
            for st in states:
                out.update(self._fetch([st]))
            return out

    def _forget(self, calls: list[_Call]) -> None:
        """Settled: release the shoal futures (the cluster drops the keys)."""
        for call in calls:
            future, call.future = call.future, None
            call.cf_future._shoal_call = None
            if future is not None:
                future.release()
        with self._lock:
            self._calls.difference_update(calls)

    # ------------------------------------------------------------------ cancelling

    def _cancel_calls(self, calls: list[_Call]) -> None:
        """Cancel those of ``calls`` that no worker has been given yet (one
        request for all); the others are marked running."""
        with self._cancel_lock:
            calls = [c for c in calls if c.pending()]
            keys = list(dict.fromkeys(c.future.key for c in calls if c.future is not None))
            if not keys:
                return
            try:
                cancelled = set(self._on_loop(self._client._request, "cancel_unstarted",
                                              keys=keys, timeout=CANCEL_TIMEOUT))
            except CommClosedError:  # the client is gone: so are its tasks
                cancelled = set(keys)
            for call in calls:
                if call.future is not None and call.future.key in cancelled:
                    call.dropped(CancelledError(call.future.key))
                else:
                    call.started()

    # ------------------------------------------------------------------ shutting down

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more calls.  ``cancel_futures=True`` cancels the calls no
        worker has been given yet; ``wait=True`` returns once every call
        submitted is done.  Safe to call more than once."""
        with self._submit_lock:
            self._shutdown = True
        with self._lock:
            # a settled call leaves _calls a moment later (its shoal future
            # released first, on the callback thread): nothing to wait for
            calls = [c for c in self._calls if not c.cf_future.done()]
        if cancel_futures and calls:
            self._cancel_calls(calls)
        if not wait or not calls:
            return
        if self._client.status in ("closing", "closed"):
            # nothing will come for them any more: do not wait forever
            for call in calls:
                call.fail(CommClosedError(f"the client is {self._client.status}"))
            return
        if self._client._in_loop_thread():
            raise RuntimeError("shutdown(wait=True) would block the client's event loop; "
                               "call shutdown(wait=False), or shut down from another thread")
        cf.wait([call.cf_future for call in calls])

    # ------------------------------------------------------------------ helpers

    def _on_loop(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
                 **kwargs: Any) -> Any:
        """Run coroutine function ``fn`` on the client's loop; wait for it here."""
        client = self._client
        if client.status != "running":
            raise CommClosedError(f"the client is {client.status}")
        if client._in_loop_thread():
            raise RuntimeError("a ClientExecutor call would block the client's event loop; "
                               "make it from another thread")
        if client._runner is not None:
            return client._runner.run_sync(fn, *args, _timeout=timeout, **kwargs)
        assert client.loop is not None  # an asynchronous client
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), client.loop).result(timeout)

    def __repr__(self) -> str:
        with self._lock:
            n = len(self._calls)
        state = "shut down" if self._shutdown else "running"
        return f"<ClientExecutor: {state}, {n} calls outstanding, client={self._client!r}>"


def _settle(call: _Call, st: FutureState, status: str, value: Payload | BaseException | None
            ) -> None:
    """Copy the outcome of done state ``st`` (``status``, and the result's
    payload, or the error fetching it) into the call's future."""
    if status == FINISHED:
        if isinstance(value, BaseException):
            call.fail(value)
            return
        assert value is not None
        try:
            result = loads(value)
        except Exception as e:
            call.fail(e)
            return
        call.succeed(result)
    elif status == ERROR:
        call.fail(exception_of_state(st))
    else:  # cancelled by the cluster, or the connection to it was lost
        exc = transfer.exception_of(st)
        if isinstance(exc, CancelledError):
            call.dropped(exc)
        else:
            call.fail(exc)


def _call_of(fut: cf.Future[Any]) -> _Call | None:
    return fut._shoal_call if isinstance(fut, ExecutorFuture) else None


def _result_or_cancel(fut: cf.Future[T], deadline: float | None) -> T:
    """``fut``'s result, waiting at most until ``deadline``; cancelled if it
    is not done by then."""
    try:
        return fut.result(None if deadline is None else deadline - time.monotonic())
    except TimeoutError:
        fut.cancel()
        raise


__all__ = ["SUBMIT_OPTIONS", "ClientExecutor", "ExecutorFuture", "SubmitOptions", "submit_options"]
