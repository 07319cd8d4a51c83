"""What a running task can ask about its surroundings, and tasks that submit
tasks.

    def fib(n):
        if n < 2:
            return n
        with worker_client() as client:        # leave the thread pool while waiting
            a, b = client.map(fib, [n - 1, n - 2])
            return a.result() + b.result()

A task that waits on other tasks must ``secede()`` first (``worker_client``
does it): otherwise tasks waiting on tasks can occupy every thread and wait
for each other forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shoal.worker.executor import current_task


def get_worker() -> Any:
    """The worker running the current task."""
    task = current_task()
    if task is None or task[0] is None:
        raise ValueError("get_worker() was called outside of a task running on a worker")
    return task[0]


def get_client(timeout: float | None = None) -> Any:
    """In a task: a client of the task's scheduler.  Elsewhere: the default client."""
    task = current_task()
    if task is not None and task[0] is not None:
        return task[0].get_client()
    from shoal.client.core import default_client

    return default_client()


def secede() -> None:
    """Leave the worker's thread pool for the rest of this task."""
    get_worker().executor.secede()


def rejoin() -> None:
    """Count against the worker's thread pool again."""
    get_worker().executor.rejoin()


@contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True) -> Iterator[Any]:
    """A client for submitting tasks from a task, seceded while inside."""
    client = get_client(timeout)
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
