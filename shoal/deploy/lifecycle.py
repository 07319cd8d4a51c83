"""``await server`` and ``async with server`` for shoal's ``Scheduler``,
``Worker`` and ``Nanny``, as dask's servers offer: awaiting starts it (once),
the ``async with`` block closes it at the end."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

S = TypeVar("S", bound="Startable")


class Startable:
    """A mixin for a class with ``status`` ("created" until started),
    ``async start()`` and ``async close()``."""

    status: str

    async def start(self: S) -> S:  # pragma: no cover - each class has its own
        raise NotImplementedError

    async def close(self) -> Any:  # pragma: no cover - each class has its own
        raise NotImplementedError

    def __await__(self: S) -> Generator[Any, None, S]:
        return self._start_once().__await__()

    async def _start_once(self: S) -> S:
        if self.status == "created":
            await self.start()
        return self

    async def __aenter__(self: S) -> S:
        return await self._start_once()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
