"""``Adaptive``: a cluster that grows when work waits and shrinks when
workers idle, as dask's ``distributed.deploy.Adaptive``.  Made by
``cluster.adapt(minimum=, maximum=, ...)``; rarely by hand.

Every ``interval`` it asks the scheduler how many workers the work wants
(``adaptive_target``: ``shoal/scheduler/scaling.py``), and lets
``AdaptiveCore`` decide.  Scaling up calls the cluster's scale.  Scaling
down retires the chosen workers through the scheduler first
(``retire_workers``: every result only they hold is copied to a worker that
stays, then they leave), and only then has the cluster close what is left
of them (their process, job or pod).

It runs as a task on the cluster's event loop (the shared loop thread for a
synchronous cluster).  An error in a round is logged and the next round
tried; the cluster closing stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from shoal.deploy.adaptive_core import AdaptiveCore
from shoal.units import parse_timedelta

logger = logging.getLogger("shoal.deploy.adaptive")

#: keywords of the scheduler's ``workers_to_close`` an Adaptive may pass on
CLOSE_KEYWORDS = frozenset({"memory_ratio", "n"})


class Adaptive(AdaptiveCore):
    """Adaptively scale ``cluster`` on the scheduler's load (dask's keywords).

    interval: time between rounds (setting ``adaptive.interval``, 1 s).
    minimum, maximum: bounds on the number of workers (settings
        ``adaptive.minimum``/``adaptive.maximum``: 0 and infinity).
    wait_count: rounds in a row a worker must be proposed for closing
        before it is closed (``adaptive.wait-count``, 3).
    target_duration: how long the work in sight should take; shorter asks
        for more workers (``adaptive.target-duration``, 5 s).
    worker_key: refused: dask runs it on the scheduler, which in shoal
        never runs user code.
    **kwargs: for the scheduler's ``workers_to_close`` (``memory_ratio``).
    """

    def __init__(
        self,
        cluster: Any,
        interval: str | float | timedelta | None = None,
        minimum: int | None = None,
        maximum: float | None = None,
        wait_count: int | None = None,
        target_duration: str | float | timedelta | None = None,
        worker_key: Any = None,
        **kwargs: Any,
    ) -> None:
        from shoal import config

        if worker_key is not None:
            raise NotImplementedError(
                "Adaptive(worker_key=...): dask calls it on the scheduler, which in shoal never "
                "runs user code; workers are closed one by one")
        unknown = sorted(set(kwargs) - CLOSE_KEYWORDS)
        if unknown:
            raise TypeError(f"Adaptive() got unexpected keyword arguments {unknown} (it passes "
                            f"{sorted(CLOSE_KEYWORDS)} on to workers_to_close)")
        self.cluster = cluster
        self.worker_key = worker_key
        self._workers_to_close_kwargs = kwargs
        interval = config.get("adaptive.interval") if interval is None else interval
        minimum = config.get("adaptive.minimum") if minimum is None else minimum
        maximum = config.get("adaptive.maximum") if maximum is None else maximum
        wait_count = config.get("adaptive.wait-count") if wait_count is None else wait_count
        if target_duration is None:
            target_duration = config.get("adaptive.target-duration")
        super().__init__(minimum=minimum, maximum=maximum, wait_count=wait_count)
        self.interval = parse_timedelta(interval)
        self.target_duration = parse_timedelta(target_duration)
        if self.target_duration <= 0:
            raise ValueError(f"target_duration must be positive, got {target_duration!r}")
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.interval and cluster is not None:
            self.state = "starting"
            self._begin()
        else:
            self.state = "inactive"

    # ------------------------------------------------------------------ running

    def _begin(self) -> None:
        """Start the rounds on the cluster's loop, from any thread."""
        loop = self.cluster.loop
        if loop is None:
            loop = asyncio.get_running_loop()  # an asynchronous cluster, from its loop
        self._loop = loop
        if _running_loop() is loop:
            self._start()
        else:
            loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.state != "starting":
            return
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._rounds())
        self.state = "running"
        logger.info("adaptive scaling started: minimum=%s maximum=%s", self.minimum, self.maximum)

    async def _rounds(self) -> None:
        """A round every ``interval``, the first after one interval (as dask's)."""
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            if self.state != "running":
                return
            if self.cluster.status not in ("running", "created"):
                self.stop(reason="the cluster is not running")
                return
            try:
                await self.adapt()
            except Exception:
                logger.warning("adaptive scaling: a round failed", exc_info=True)

    def stop(self, reason: str = "unknown") -> None:
        """Stop adapting (from any thread); a round under way finishes."""
        if self.state in ("inactive", "stopped"):
            return
        self.state = "stopped"
        logger.info("adaptive scaling stopped: minimum=%s maximum=%s. Reason: %s",
                    self.minimum, self.maximum, reason)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            if _running_loop() is loop:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)

    async def _finished(self, timeout: float = 60.0) -> None:
        """Until the rounds have ended (call ``stop`` first), on the cluster's loop."""
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()

    # ------------------------------------------------------------------ what AdaptiveCore asks

    @property
    def loop(self) -> Any:
        return self._loop if self._loop is not None else self.cluster.loop

    @property
    def plan(self) -> set[Any]:
        return set(self.cluster.plan)

    @property
    def requested(self) -> set[Any]:
        return set(self.cluster.requested)

    @property
    def observed(self) -> set[Any]:
        return set(self.cluster.observed)

    async def target(self) -> int:
        """The scheduler's ``adaptive_target`` for our ``target_duration``."""
        return int(await self.cluster._ask("adaptive_target", target_duration=self.target_duration))

    async def recommendations(self, target: int) -> dict[str, Any]:
        await self.cluster._refresh_info()  # observed: as the scheduler sees it now
        if len(self.plan) != len(self.requested):
            await self.cluster  # let the cluster catch up with its own plan first
        return await super().recommendations(target)

    async def workers_to_close(self, target: int) -> list[Any]:
        """The scheduler's choice (idle workers holding least), by name."""
        names = await self.cluster._ask("workers_to_close", target=target, attribute="name",
                                        **self._workers_to_close_kwargs)
        return list(names)

    async def scale_down(self, workers: list[Any]) -> None:
        """Retire ``workers`` (names) gracefully, then close what is left of them."""
        if not workers:
            return
        logger.info("adaptive scaling: retiring workers %s", workers)
        await self.cluster._ask("retire_workers", names=[str(w) for w in workers], remove=True,
                                close_workers=True)
        result = self.cluster.scale_down(workers)
        if hasattr(result, "__await__"):
            await result

    async def scale_up(self, n: int) -> None:
        logger.info("adaptive scaling: scaling up to %d workers", n)
        scale = getattr(self.cluster, "_scale_async", None)
        if scale is not None:
            await scale(n)
            return
        result = self.cluster.scale(n)
        if hasattr(result, "__await__"):
            await result

    def _now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return (f"<Adaptive {self.state}: minimum={self.minimum} maximum={self.maximum} "
                f"interval={self.interval}s>")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

