"""The Active Memory Manager: a scheduler extension that drops superfluous
copies of results (``replica_policy.reduce_replicas``, dask's
``ReduceReplicas``), once on request or every
``scheduler.active-memory-manager.interval`` while started.

Clients drive it with ``client.amm.start()``, ``stop()``, ``running()`` and
``run_once()`` (one request, ``amm_handler``, as in dask).  Not started by
default (``scheduler.active-memory-manager.start``: false), unlike dask: it
would undo ``client.replicate()``, which shoal keeps as it was asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.scheduler import control_state, replica_policy

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class ActiveMemoryManager:
    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.interval = config.duration("scheduler.active-memory-manager.interval") or 2.0
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # copies dropped since start
        if bool(config.get("scheduler.active-memory-manager.start")):
            self._started = True  # the loop starts with the scheduler's first worker
        else:
            self._started = False

    def worker_joined(self, address: str) -> None:
        if self._started and self._task is None:
            self.start()

    async def rpc_amm_handler(self, client_id: str, op: str) -> Any:
        """dask's ``amm_handler(method)``: ``start``, ``stop``, ``running``, ``run_once``."""
        method = op
        if method == "start":
            self.start()
        elif method == "stop":
            self.stop()
        elif method == "running":
            return self.running()
        elif method == "run_once":
            self.run_once()
        else:
            raise ValueError(f"the Active Memory Manager has no method {method!r} (start, stop, "
                             "running, run_once)")
        return None

    def start(self) -> None:
        self._started = True
        if self._task is None and self.server.status == "running":
            self._task = self.server.loop.create_task(self._periodically())

    def stop(self) -> None:
        self._started = False
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def closing(self) -> None:
        self.stop()

    async def _periodically(self) -> None:
        while self.server.status == "running":
            await asyncio.sleep(self.interval)
            try:
                self.run_once()
            except Exception:  # one bad cycle must not end the manager
                logger.exception("Active Memory Manager cycle failed")

    def run_once(self) -> int:
        """One cycle: drop what the policy says; the number of copies dropped."""
        state = self.server.state
        dropped = 0
        for w, keys in replica_policy.reduce_replicas(state).items():
            dropped += len(control_state.drop_replicas(state, w.address, keys, time.monotonic()))
        if dropped:
            self.dropped += dropped
            logger.debug("Active Memory Manager dropped %d superfluous copies", dropped)
            self.server._schedule_flush()
        return dropped


__all__ = ["ActiveMemoryManager"]
