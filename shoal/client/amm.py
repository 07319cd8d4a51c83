"""``client.amm``: the Active Memory Manager's accessors, as in dask.

    client.amm.run_once()   # drop superfluous copies of results now
    client.amm.start()      # ... and every scheduler.active-memory-manager.interval
    client.amm.running()    # True
    client.amm.stop()

Each is one request to the scheduler (``shoal/scheduler/active_memory.py``);
synchronous on a synchronous client, awaitable on an asynchronous one.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from typing import Any


class AMMClientProxy:
    """The Active Memory Manager's controls on a client (``client.amm``)."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def _run(self, method: str) -> Any:
        return self._client._sync(self._client._request, "amm_handler", op=method)

    def start(self) -> Any:
        """Run it every ``scheduler.active-memory-manager.interval`` from now on."""
        return self._run("start")

    def stop(self) -> Any:
        return self._run("stop")

    def run_once(self) -> Any:
        """One cycle now, whether started or not."""
        return self._run("run_once")

    def running(self) -> Any:
        """Whether it runs periodically."""
        return self._run("running")

    def __repr__(self) -> str:
        return f"<AMMClientProxy of {self._client!r}>"


class ActiveMemory(MixinBase):
    @property
    def amm(self) -> AMMClientProxy:
        """The Active Memory Manager's controls: ``start``, ``stop``,
        ``running``, ``run_once`` (dask's ``client.amm``)."""
        return AMMClientProxy(self)


__all__ = ["AMMClientProxy", "ActiveMemory"]
