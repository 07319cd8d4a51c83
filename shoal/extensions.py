"""Extensions: objects whose ``rpc_<method>`` functions answer requests of
that name, on the scheduler (``SchedulerServer.add_extension``) and on the
workers (``WorkerServer.add_extension``).  One module per responsibility adds
its requests this way, so the servers stay shells."""

from __future__ import annotations

from typing import Any


def add_handlers(handlers: dict[str, Any], extension: Any, where: str) -> None:
    """Register ``extension``'s ``rpc_<method>`` functions in ``handlers``."""
    for attr in dir(type(extension)):
        if attr.startswith("rpc_"):
            method = attr[4:]
            if method in handlers:
                raise ValueError(f"two {where} extensions answer {method!r}")
            handlers[method] = getattr(extension, attr)
