"""The decision at the heart of adaptive scaling, with none of the cluster
details: given how many workers the work wants and the workers the cluster
has, scale up, scale down (which workers), or stay (dask's ``AdaptiveCore``).

A subclass supplies what it knows of the cluster:

* ``plan``: the workers the cluster means to have (names);
* ``requested``: those it asked its resource manager for;
* ``observed``: those that joined the scheduler;
* ``target()``: how many workers the work wants;
* ``workers_to_close(target)``: which to close to get down to ``target``;
* ``scale_up(n)``, ``scale_down(workers)``: carry a decision out.

Rules:
1. The target is kept within ``minimum`` and ``maximum``, always.
2. Up at once: a target above the plan scales up to it.
3. Down with patience: a worker is closed only after it was proposed for
   closing ``wait_count`` rounds in a row, so a short lull between two
   bursts of work does not throw workers away.  Workers asked for but not
   arrived yet are dropped first (they hold nothing).
4. One round at a time: a round that starts while another runs does nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

#: rounds kept in ``log``
LOG_LENGTH = 1000


class AdaptiveCore(ABC):
    """Scale-up/scale-down decisions (see the module docstring)."""

    def __init__(self, minimum: int = 0, maximum: float = math.inf, wait_count: int = 3) -> None:
        if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
            raise ValueError(f"minimum must be a number of workers >= 0, got {minimum!r}")
        if isinstance(maximum, bool) or not (isinstance(maximum, int) or maximum == math.inf):
            raise ValueError(f"maximum must be an int or math.inf, got {maximum!r}")
        if maximum < minimum:
            raise ValueError(f"maximum ({maximum}) is below minimum ({minimum})")
        if not isinstance(wait_count, int) or isinstance(wait_count, bool) or wait_count < 1:
            raise ValueError(f"wait_count must be a positive int, got {wait_count!r}")
        self.minimum = minimum
        self.maximum = maximum
        self.wait_count = wait_count
        #: worker -> rounds in a row it was proposed for closing
        self.close_counts: dict[Any, int] = {}
        #: (time, recommendation) of each round that changed something
        self.log: deque[tuple[float, dict[str, Any]]] = deque(maxlen=LOG_LENGTH)
        self._adapting = False

    # ------------------------------------------------------------------ what the cluster knows

    @property
    @abstractmethod
    def plan(self) -> set[Any]: ...

    @property
    @abstractmethod
    def requested(self) -> set[Any]: ...

    @property
    @abstractmethod
    def observed(self) -> set[Any]: ...

    @abstractmethod
    async def target(self) -> int:
        """How many workers the work wants."""

    async def workers_to_close(self, target: int) -> list[Any]:
        """Workers to close to get down to ``target`` (default: any)."""
        return sorted(self.observed, key=str)[target:]

    @abstractmethod
    async def scale_up(self, n: int) -> None: ...

    @abstractmethod
    async def scale_down(self, workers: list[Any]) -> None: ...

    # ------------------------------------------------------------------ the decision

    async def safe_target(self) -> int:
        """``target()`` within ``minimum`` and ``maximum``."""
        n = await self.target()
        if n > self.maximum:
            n = int(self.maximum)
        return max(n, self.minimum)

    async def recommendations(self, target: int) -> dict[str, Any]:
        """``{"status": "same"}``, ``{"status": "up", "n": target}`` or
        ``{"status": "down", "workers": [...]}``."""
        plan = self.plan
        if target == len(plan):
            self.close_counts.clear()
            return {"status": "same"}
        if target > len(plan):
            self.close_counts.clear()
            return {"status": "up", "n": target}
        not_arrived = sorted(self.requested - self.observed, key=str)
        to_close = set(not_arrived[: len(plan) - target])
        if target < len(plan) - len(to_close):
            to_close.update(await self.workers_to_close(target))
        firmly = set()
        for w in to_close:
            self.close_counts[w] = self.close_counts.get(w, 0) + 1
            if self.close_counts[w] >= self.wait_count:
                firmly.add(w)
        for w in list(self.close_counts):
            if w in firmly or w not in to_close:
                del self.close_counts[w]
        if firmly:
            return {"status": "down", "workers": sorted(firmly, key=str)}
        return {"status": "same"}

    async def adapt(self) -> None:
        """One round: ask the target, decide, scale."""
        if self._adapting:
            return
        self._adapting = True
        try:
            target = await self.safe_target()
            recommendation = await self.recommendations(target)
            status = recommendation.pop("status")
            if status == "same":
                return
            self.log.append((self._now(), {"status": status, **recommendation}))
            if status == "up":
                await self.scale_up(recommendation["n"])
            else:
                await self.scale_down(recommendation["workers"])
        finally:
            self._adapting = False

    def _now(self) -> float:
        """The time a round is logged at (a subclass gives the clock)."""
        return 0.0
