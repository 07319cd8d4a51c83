"""Closing a server (scheduler or worker shell) once, whatever fails.

A process's main coroutine waits for its server's ``_closed`` event; a close
that raised half-way used to leave that event unset, and the process sat
until its parent terminated it, then killed it.  ``close_once`` runs the
server's closing steps and sets the event in any case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


async def close_once(server: Any, steps: Callable[[], Awaitable[None]]) -> None:
    """Run ``steps()`` the first time; later callers wait for that to end.
    ``server`` has ``status`` and an ``asyncio.Event`` ``_closed``."""
    if server.status in ("closing", "closed"):
        await server._closed.wait()
        return
    server.status = "closing"
    try:
        await steps()
    finally:
        server.status = "closed"
        server._closed.set()
