"""``shoal.print`` and ``shoal.warn``: print or warn on the worker, and in
every client of the cluster too, as dask.distributed's ``print``/``warn``.

    from shoal import print, warn

    def task(x):
        print("working on", x)            # the worker's stderr, and each client's stdout
        warn("x is negative")             # a UserWarning on the worker and in each client
        return x

Inside a task each call logs an event on the topic "print" (or "warn"),
which every client subscribes to when it connects; the client prints the
same text to its own ``sys.stdout`` (``sys.stderr`` for
``file=sys.stderr``) or issues the same warning.  The event records the
worker's address (``client.get_events("print")``); the printed line, as in
dask, is the text alone.  Outside a task they are ``builtins.print`` and
``warnings.warn``.  A plain ``print()`` in a task is not forwarded (as in
dask): it goes to the worker's output only.

This module defines ``print``: it calls the builtin as ``builtins.print``.
"""

from __future__ import annotations

import builtins
import sys
import warnings
from typing import IO, Any

from shoal.protocol.events import PRINT_TOPIC, WARN_TOPIC
from shoal.worker.executor import current_task


def _task_worker() -> Any:
    task = current_task()
    return task[0] if task is not None else None


def print(*args: Any, sep: str | None = " ", end: str | None = "\n",
          file: IO[str] | None = None, flush: bool = False) -> None:
    """``builtins.print``; inside a task, also in every client of the
    cluster.  ``file`` may only be None, ``sys.stdout`` or ``sys.stderr``
    in a task (a client cannot write to the worker's files)."""
    worker = _task_worker()
    if worker is None:
        builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    msg: dict[str, Any] = {"args": [str(a) for a in args], "sep": sep, "end": end,
                           "flush": bool(flush)}
    if file is sys.stdout:
        msg["file"] = 1
    elif file is sys.stderr:
        msg["file"] = 2
    elif file is not None:
        raise TypeError(f"print() in a task writes to sys.stdout or sys.stderr only (the "
                        f"clients print it too), got file={file!r}")
    # the builtin checks sep and end before anything is sent
    builtins.print(*msg["args"], sep=sep, end=end, file=file, flush=flush)
    worker.log_event(PRINT_TOPIC, msg)


def warn(message: str | Warning, category: type[Warning] | None = UserWarning,
         stacklevel: int = 1, source: Any = None) -> None:
    """``warnings.warn``; inside a task, the same warning is also issued in
    every client of the cluster (``stacklevel`` and ``source`` apply on the
    worker only)."""
    worker = _task_worker()
    if worker is not None:
        if category is not None and not (isinstance(category, type) and
                                         issubclass(category, Warning)):
            raise TypeError(f"category must be a Warning subclass, not {category!r}")
        worker.log_event(WARN_TOPIC, _warning_event(message, category))
    warnings.warn(message, category, stacklevel + 1, source)


def _warning_event(message: str | Warning, category: type[Warning] | None) -> dict[str, Any]:
    """The warning's message and category pickled (msgpack cannot carry
    them), as dask does; what does not pickle goes as text."""
    import cloudpickle

    try:
        return {"message": cloudpickle.dumps(message), "category": cloudpickle.dumps(category)}
    except Exception:
        return {"message": cloudpickle.dumps(str(message)), "category": cloudpickle.dumps(UserWarning)}
