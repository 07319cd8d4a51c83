"""Extensions: objects whose ``rpc_<method>`` functions answer requests of
that name, on the scheduler (``SchedulerServer.add_extension``) and on the
workers (``WorkerServer.add_extension``).  One module per responsibility adds
its requests this way, so the servers stay shells."""

from __future__ import annotations

import inspect
from typing import Any


def add_handlers(handlers: dict[str, Any], extension: Any, where: str) -> None:
    """Register ``extension``'s ``rpc_<method>`` functions in ``handlers``."""
    for attr in dir(type(extension)):
        if attr.startswith("rpc_"):
            method = attr[4:]
            if method in handlers:
                raise ValueError(f"two {where} extensions answer {method!r}")
            handlers[method] = getattr(extension, attr)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, awaited if it returns an awaitable: user
    hooks (plugins) may be plain functions or coroutine functions."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
