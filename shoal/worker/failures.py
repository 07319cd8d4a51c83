"""The worker's log record of a failed task, as dask.distributed's "Compute
Failed" (an ERROR on the ``shoal.worker`` logger):

    Compute Failed
    Key:       div-6f1c...
    Function:  div
    args:      (1, 0)
    kwargs:    {}
    Exception: "ZeroDivisionError('division by zero')"
    Traceback: '  File "<stdin>", line 2, in div\\n ...'

Each of function, args and kwargs is cut to ``worker.failed-task-args-chars``
characters, and built with bounded reprs (``reprlib``), so a huge argument
costs neither time nor log space.  Logged on the task's thread while the task
is still current, so ``client.forward_logging("shoal.worker")`` forwards it.
"""

from __future__ import annotations

import logging
import reprlib
from typing import Any

logger = logging.getLogger("shoal.worker")

_NOT_LOADED = "<not loaded>"


def log_task_failure(key: str, func: Any, args: Any, kwargs: Any, exc: BaseException,
                     text: str, limit: int) -> None:
    """Log that ``key`` failed; ``func``/``args``/``kwargs`` are None when
    the failure came before they were unpickled."""
    logger.error(
        "Compute Failed\nKey:       %s\nFunction:  %s\nargs:      %s\nkwargs:    %s\n"
        "Exception: %r\nTraceback: %r\n",
        key,
        _NOT_LOADED if func is None else _function_name(func, limit),
        _NOT_LOADED if args is None else summary(args, limit),
        _NOT_LOADED if kwargs is None else summary(kwargs, limit),
        summary(exc, limit),
        text[-limit:] if limit > 0 else text,
    )


def summary(value: Any, limit: int) -> str:
    """A repr of ``value`` of at most ``limit`` characters (0: no limit)."""
    r = reprlib.Repr()
    if limit > 0:
        r.maxstring = r.maxother = max(limit, 20)
        r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = 20
        r.maxlevel = 4
    try:
        text = r.repr(value) if limit > 0 else repr(value)
    except Exception as e:
        text = f"<{type(value).__name__} whose repr failed: {e!r}>"
    if 0 < limit < len(text):
        text = text[: max(0, limit - 3)] + "..."
    return text


def _function_name(func: Any, limit: int) -> str:
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str):
        module = getattr(func, "__module__", None)
        if isinstance(module, str) and module not in ("__main__", "builtins"):
            name = f"{module}.{name}"
        return name[:limit] if limit > 0 else name
    return summary(func, limit)
