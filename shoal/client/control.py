"""Running the cluster: ``run_on_scheduler``, ``wait_for_workers`` ... as
methods of ``shoal.Client``.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any



class ClusterControl(MixinBase):
    def wait_for_workers(self, n_workers: int = 1, timeout: float | str | None = None,
                         asynchronous: bool | None = None) -> Any:
        """Block until at least ``n_workers`` workers are connected; raise
        ``TimeoutError`` if ``timeout`` (seconds, or "30s") passes first."""
        from shoal.units import parse_timedelta

        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 0:
            raise ValueError(f"n_workers must be a count of workers, got {n_workers!r}")
        seconds = None if timeout is None else parse_timedelta(timeout)
        return self._sync(self._request, "wait_for_workers", n=n_workers, timeout=seconds,
                          asynchronous=asynchronous)

    def run_on_scheduler(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the scheduler process.  If it
        takes a ``dask_scheduler`` (or ``scheduler``) argument it receives the
        scheduler; a coroutine function runs on the scheduler's event loop."""
        asynchronous = kwargs.pop("asynchronous", None)
        return self._sync(self._run_on_scheduler, function, args, kwargs, asynchronous=asynchronous)

    async def _run_on_scheduler(self, function: Callable[..., Any], args: tuple[Any, ...],
                                kwargs: dict[str, Any]) -> Any:
        from shoal.protocol.serialize import dumps, loads

        result = await self._request(
            "run_on_scheduler", function=dumps(function), args=dumps((args, kwargs))
        )
        return loads(result)
