"""What running code can ask about its surroundings (the worker, a client),
and tasks that submit tasks.

    def fib(n):
        if n < 2:
            return n
        with worker_client() as client:        # leave the thread pool while waiting
            a, b = client.map(fib, [n - 1, n - 2])
            return a.result() + b.result()

A task that waits on other tasks must ``secede()`` first (``worker_client``
does it): otherwise tasks waiting on tasks can occupy every thread and wait
for each other forever.

"Inside a worker" means: in a task (its thread), in an actor's method (the
worker's actor thread, or its event loop for ``async def`` methods), or in
any thread of a worker process that runs one worker.  There ``get_client()``
is the worker's client, which every object made without a client uses
(futures, ``Queue``, ``Lock``, ``Semaphore``, actor handles...), as in
dask.distributed.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shoal.worker.executor import current_task

#: the worker whose actor method runs in this context (its actor thread, or
#: the task running an ``async def`` method on its loop)
_actor_worker: contextvars.ContextVar[Any] = contextvars.ContextVar("shoal_actor_worker", default=None)

#: the running workers of this process
_workers: weakref.WeakSet[Any] = weakref.WeakSet()


def worker_started(worker: Any) -> None:
    _workers.add(worker)


def worker_stopped(worker: Any) -> None:
    _workers.discard(worker)


def in_actor(worker: Any) -> contextvars.Token[Any]:
    """Mark this context as running ``worker``'s actor methods (``reset`` with the token)."""
    return _actor_worker.set(worker)


def left_actor(token: contextvars.Token[Any]) -> None:
    _actor_worker.reset(token)


def current_worker() -> Any:
    """The worker whose task or actor method is running here, else None."""
    task = current_task()
    if task is not None and task[0] is not None:
        return task[0]
    return _actor_worker.get()


def on_actor_thread(worker: Any) -> bool:
    """Whether this is ``worker``'s actor thread running one of its actors' methods."""
    if _actor_worker.get() is not worker:
        return False
    from shoal.client.loop import running_on

    return not running_on(worker.loop)


def on_worker_loop() -> bool:
    """Whether this is an ``async def`` actor method running on its worker's event loop."""
    worker = _actor_worker.get()
    if worker is None:
        return False
    from shoal.client.loop import running_on

    return running_on(worker.loop)


def process_worker() -> Any:
    """The one running worker of this process (a worker process started by
    a cluster or ``shoal worker``), else None."""
    running = [w for w in list(_workers) if w.status == "running"]
    return running[0] if len(running) == 1 else None


def get_worker() -> Any:
    """The worker running the current task (or actor method)."""
    worker = current_worker()
    if worker is None:
        raise ValueError("No worker found: get_worker() was called outside of a task or actor "
                         "method running on a worker")
    return worker


def get_client(address: str | None = None, timeout: float | str | None = None,
               resolve_address: bool = True) -> Any:
    """A client of this task's scheduler inside a worker (see the module
    docstring); elsewhere the current or default client; with ``address``,
    a client of the scheduler there (a new one if no client here talks to it)."""
    worker = current_worker()
    if worker is not None and _same(address, worker.scheduler_address):
        return worker.get_client(timeout)
    from shoal.client.core import default_client

    try:
        client = default_client()
    except ValueError:
        client = None
    if client is not None and _same(address, getattr(client, "scheduler_address", None)):
        return client
    worker = worker or process_worker()
    if worker is not None and _same(address, worker.scheduler_address):
        return worker.get_client(timeout)
    if address is not None:
        from shoal.client.client import Client

        return Client(address, timeout=timeout)
    raise ValueError(
        "No clients found: start a client first (shoal.Client()), pass client=..., or make one "
        "current with client.as_current(); inside tasks and actor methods the worker's client "
        "is used")


def _same(address: str | None, scheduler_address: str | None) -> bool:
    if address is None:
        return True
    if scheduler_address is None:
        return False
    from shoal.comm.addresses import parse_address

    return parse_address(address) == parse_address(scheduler_address)


def secede() -> None:
    """Leave the worker's thread pool for the rest of this task."""
    get_worker().executor.secede()


def rejoin() -> None:
    """Count against the worker's thread pool again."""
    get_worker().executor.rejoin()


@contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True) -> Iterator[Any]:
    """A client for submitting tasks from a task, seceded while inside."""
    client = get_client(timeout=timeout)
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()


def local_client(*args: Any, **kwargs: Any) -> Any:
    """The old name of ``worker_client`` (dask.distributed warns, and so do we)."""
    import warnings

    warnings.warn("local_client has moved to worker_client", stacklevel=2)
    return worker_client(*args, **kwargs)
