"""Runs tasks on a pool of threads and hands results back to the event loop.

Data flow::

    event loop --submit(key, func_id, args)--> SimpleQueue --> thread:
        unpickle function (cached) and arguments (dependencies resolved from
        the worker's store), call, measure, pickle a small result
    thread --append--> done deque --one call_soon_threadsafe per batch--> loop

    thread --(key, start, stop, thread, nbytes, type)--> ``runs`` (bounded
        deque, read on request for the task stream: nothing is sent per task)
    ``running`` {thread ident: key}: read by the profiler and ``call_stack``

Rules:
1. A thread never touches the state machine; it only reads the store (to
   resolve dependencies) and reports through the done deque.
2. The loop is woken once per batch of completions, not once per task.
3. Anything a task raises (even ``SystemExit``) is a task failure, never a
   dead thread.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

from shoal.errors import Reschedule
from shoal.protocol.serialize import (
    Payload,
    dumps,
    dumps_exception,
    loads_function,
    loads_task_args,
)
from shoal.worker import shm
from shoal.worker.failures import log_task_failure
from shoal.worker.sizeof import sizeof
from shoal.worker.spill import LazyValue, SpillBuffer

_local = threading.local()


class Success:
    __slots__ = ("duration", "inline", "key", "nbytes", "shared", "type_name", "value")

    def __init__(self, key: str, value: Any, nbytes: int, type_name: str, duration: float,
                 inline: Payload | None, shared: Any = None) -> None:
        self.shared = shared  # shm.SharedRecord when the value lives in shared memory
        self.key = key
        self.value = value
        self.nbytes = nbytes
        self.type_name = type_name
        self.duration = duration
        self.inline = inline


class Skipped:
    """A task freed while it waited in the executor's queue: not run."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


class Failure:
    __slots__ = ("duration", "exception", "key", "reschedule", "text", "traceback")

    def __init__(self, key: str, exception: Payload, traceback: Payload, text: str, duration: float,
                 reschedule: bool = False):
        self.key = key
        self.exception = exception
        self.traceback = traceback
        self.text = text
        self.duration = duration
        self.reschedule = reschedule  # the task raised Reschedule


def current_task() -> tuple[Any, str] | None:
    """``(worker_server, key)`` when called from inside a running task."""
    return getattr(_local, "task", None)


class TaskExecutor:
    def __init__(
        self,
        nthreads: int,
        loop: asyncio.AbstractEventLoop,
        on_results: Callable[[list[Success | Failure | Skipped]], None],
        functions: MutableMapping[bytes, Any],
        data: SpillBuffer,
        worker: Any = None,
        inline_limit: int | None = None,
        is_cancelled: Callable[[str], bool] | None = None,
        push: Callable[[str, Success], None] | None = None,
        runs_kept: int | None = None,
    ) -> None:
        self.is_cancelled = is_cancelled
        self.push = push  # (client id, result): send a small result to its client directly
        self.loop = loop
        self.on_results = on_results
        self.functions = functions
        self.data = data
        self.worker = worker
        from shoal import config

        if inline_limit is None:
            # results whose pickle is at most this big travel with the "finished" notice
            inline_limit = config.size("worker.inline-result-bytes")
        if runs_kept is None:
            runs_kept = int(config.get("worker.task-stream-length"))
        self.inline_limit = inline_limit
        # characters of a failed task's function and arguments in its log record
        self.failed_args_chars = int(config.get("worker.failed-task-args-chars"))
        # the task stream: (seq, key, start, stop, thread ident, nbytes, type
        # name or None if it failed), perf_counter times; see worker/observability.py
        self.runs: deque[tuple[int, str, float, float, int, int, str | None]] = deque(maxlen=runs_kept)
        self.run_seq = itertools.count()
        self.running: dict[int, str] = {}  # thread ident -> key of the task it runs
        self._queue: queue.SimpleQueue[tuple[str, bytes, Payload, bool, str] | None] = queue.SimpleQueue()
        self._done: deque[Success | Failure | Skipped] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._func_lock = threading.Lock()
        self._threads_wanted = nthreads  # nthreads plus tasks that seceded
        self._threads_alive = 0
        self._thread_ids = iter(range(1 << 30))
        self._threads: list[threading.Thread] = []
        for _ in range(nthreads):
            self._start_thread()

    def _start_thread(self) -> None:
        t = threading.Thread(target=self._run, name=f"shoal-task-{next(self._thread_ids)}", daemon=True)
        with self._lock:
            self._threads_alive += 1
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def secede(self) -> None:
        """The calling task leaves the pool (it will wait on other tasks): a
        new thread takes its place, and the worker may start another task."""
        if getattr(_local, "seceded", True):
            return  # not in a task, or already seceded
        _local.seceded = True
        with self._lock:
            self._threads_wanted += 1
        self._start_thread()
        task = current_task()
        self._slots_changed(+1, task[1] if task else None)

    def rejoin(self) -> None:
        """The calling task counts against the pool's threads again."""
        if not getattr(_local, "seceded", False):
            return
        _local.seceded = False
        with self._lock:
            self._threads_wanted -= 1
        self._slots_changed(-1)

    def _slots_changed(self, delta: int, seceded_key: str | None = None) -> None:
        worker = self.worker
        if worker is not None:
            try:
                self.loop.call_soon_threadsafe(worker._slots_changed, delta, seceded_key)
            except RuntimeError:
                pass

    def submit(self, key: str, func_id: bytes, args: Payload, actor: bool = False, push_to: str = "") -> None:
        self._queue.put((key, func_id, args, actor, push_to))

    def shutdown(self, wait: bool = True, timeout: float = 5.0) -> None:
        for _ in range(self._threads_alive + 1):
            self._queue.put(None)
        if wait:
            deadline = time.monotonic() + timeout
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))

    # -- on the task threads -----------------------------------------------------

    def _function(self, func_id: bytes) -> Any:
        func = self.functions[func_id]
        if type(func) is bytes:
            with self._func_lock:
                func = self.functions[func_id]
                if type(func) is bytes:
                    func = loads_function(func)
                    self.functions[func_id] = func
        return func

    def _run(self) -> None:
        get = self._queue.get
        ident = threading.get_ident()
        running = self.running
        while True:
            item = get()
            if item is None:
                return
            key, func_id, args, actor, push_to = item
            if self.is_cancelled is not None and self.is_cancelled(key):
                self._done.append(Skipped(key))
                self._wake()
                continue
            _local.task = (self.worker, key)
            _local.seceded = False
            running[ident] = key
            start = time.perf_counter()
            func = a = kw = None
            try:
                func = self._function(func_id)
                a, kw = loads_task_args(args, self.data)
                value = func(*a, **kw)
                stop = time.perf_counter()
                success = (self._actor_created(key, value, stop - start) if actor
                           else self._success(key, value, stop - start))
                self.runs.append((next(self.run_seq), key, start, stop, ident, success.nbytes,
                                  success.type_name))
                result: Success | Failure = success
                del value, success  # the store holds it now; this thread need not
            except BaseException as e:
                stop = time.perf_counter()
                exc, tb, text = dumps_exception(e)
                reschedule = isinstance(e, Reschedule)
                result = Failure(key, exc, tb, text, stop - start, reschedule)
                self.runs.append((next(self.run_seq), key, start, stop, ident, 0, None))
                if not reschedule:
                    # while the task is current: forwarded logging takes it along
                    log_task_failure(key, func, a, kw, e, text, self.failed_args_chars)
                del e
            finally:
                _local.task = None
                del running[ident]
            if push_to and type(result) is Success and result.inline is not None and not actor \
                    and self.push is not None and self._queue.empty() \
                    and not (self.is_cancelled is not None and self.is_cancelled(key)):
                # nothing queued behind it: the client that waits hears now,
                # not after a trip through this loop and the scheduler (not
                # for a run taken back: the client may want the key anew)
                self.push(push_to, result)
            self._done.append(result)
            # the task's function and arguments go now, not when this thread's
            # next task comes: their memory, and what they hold (an actor
            # handle's claim on its actor)
            del result, item, args, func, a, kw
            if not self._wake():
                return
            if _local.seceded:
                _local.seceded = None
                with self._lock:
                    self._threads_wanted -= 1
                self._slots_changed(-1)
            with self._lock:
                if self._threads_alive > self._threads_wanted:
                    self._threads_alive -= 1
                    return  # the pool has a thread too many since a secede

    def _wake(self) -> bool:
        """Have the loop collect the done deque (once per batch); False if the
        loop is gone."""
        with self._lock:
            if self._wake_pending:
                return True
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: we are shutting down
            return False
        return True

    def _success(self, key: str, value: Any, duration: float) -> Success:
        nbytes = sizeof(value)
        inline = None
        if nbytes >= self.inline_limit:
            # past the memory target: older values go to disk first, from
            # this thread (see SpillBuffer.make_room)
            self.data.make_room(nbytes)
        if nbytes >= shm.SHM_MIN_BYTES:
            moved = shm.share(value)
            if moved is not None:
                value, record = moved
                return Success(key, value, nbytes, _type_name(value), duration, None, record)
        if nbytes <= 4 * self.inline_limit:
            try:
                payload = dumps(value)
            except Exception:
                payload = None  # stays here; a fetch will report the error
            if payload is not None and payload.nbytes <= self.inline_limit:
                inline = payload
        return Success(key, value, nbytes, _type_name(value), duration, inline)

    def _actor_created(self, key: str, instance: Any, duration: float) -> Success:
        """An actor's constructor ran: what travels is a handle, not the object."""
        from shoal.client.actor import Actor

        address = self.worker.address if self.worker else ""
        handle = dumps(Actor._unbound(type(instance), address, key))
        return Success(key, instance, sizeof(instance), _type_name(instance), duration, handle)

    # -- on the loop -------------------------------------------------------------

    def _deliver(self) -> None:
        with self._lock:
            self._wake_pending = False
        done = self._done
        batch = []
        while done:
            batch.append(done.popleft())
        if batch:
            self.on_results(batch)


def _type_name(value: Any) -> str:
    t = type(value)
    mod = t.__module__
    if mod == "builtins":
        return t.__qualname__
    return f"{mod}.{t.__qualname__}"


__all__ = ["Failure", "LazyValue", "Skipped", "Success", "TaskExecutor", "current_task"]
