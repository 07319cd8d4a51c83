"""Extensions: objects whose ``rpc_<method>`` functions answer requests of
that name, on the scheduler (``SchedulerServer.add_extension``) and on the
workers (``WorkerServer.add_extension``).  One module per responsibility adds
its requests this way, so the servers stay shells.

A scheduler extension may also take messages of its own types from clients
and workers: its ``client_messages`` and ``worker_messages`` map a message
type to the name of the method called with ``(client_id or address, msg)``.
"""

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


def add_message_handlers(handlers: dict[type, Any], extension: Any, attr: str) -> None:
    """Register the methods ``extension.<attr>`` names (message type ->
    method name) as the handlers of those message types."""
    for msg_type, name in getattr(extension, attr, {}).items():
        if msg_type in handlers:
            raise ValueError(f"two extensions handle {msg_type.__name__} ({attr})")
        handlers[msg_type] = getattr(extension, name)
