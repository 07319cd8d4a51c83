"""When a worker spills, pauses or is restarted: the memory policy.  PURE.

Thresholds in, decisions out: no clocks, no processes, no I/O.  The worker's
``memory_manager.py`` measures and acts; the nanny (``cluster/process.py``)
asks ``should_terminate``.

The fractions are dask.distributed's (settings ``worker.memory.*``), each of
the worker's memory limit, each ``None``/``False`` to turn that step off:

* ``target`` (0.60) of *managed* memory (the sizes of the values the worker
  holds, shared memory included): past it, the least recently used values
  are spilled to disk until managed memory is back under it.  While the
  ``spill`` step is on, the memory the process uses beyond its values is
  taken off the target (``managed_target``): process memory is held at the
  target, where dask lets it swing between target and spill;
* ``spill`` (0.70) of *process* memory (what the operating system counts,
  see ``memory_manager.process_memory``): past it, values are spilled until
  process memory is back under ``target`` (memory the worker does not manage,
  a leak or a task's temporaries, can make this spill more);
* ``pause`` (0.80) of process memory: past it the worker starts no task and
  fetches no dependency until it is back under;
* ``terminate`` (0.95) of process memory: the nanny restarts the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_NAMES = ("target", "spill", "pause", "terminate")


def fraction(name: str, value: Any) -> float | None:
    """A threshold as written in the settings: a number in (0, 1], or
    ``False``/``None`` (off).  Anything else raises ``ValueError``."""
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"worker.memory.{name} must be a fraction of the memory limit "
                         f"(0 < x <= 1) or false, got {value!r}")
    if not 0 < value <= 1:
        raise ValueError(f"worker.memory.{name} must be in (0, 1] or false, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class MemoryPolicy:
    """A worker's thresholds.  ``limit`` 0 means no limit: nothing is ever
    decided then."""

    limit: int
    target: float | None = 0.60
    spill: float | None = 0.70
    pause: float | None = 0.80
    terminate: float | None = 0.95

    @classmethod
    def from_settings(cls, limit: int, settings: dict[str, Any]) -> MemoryPolicy:
        """From ``{"target": 0.6, "spill": 0.7, ...}`` (missing keys: defaults)."""
        default = cls(limit)
        values = {n: fraction(n, settings[n]) if n in settings else getattr(default, n)
                  for n in _NAMES}
        return cls(limit, **values)

    @property
    def spills(self) -> bool:
        return bool(self.limit) and (self.target is not None or self.spill is not None)

    def target_bytes(self) -> int | None:
        """Managed bytes kept in memory before spilling (None: no such limit)."""
        if not self.limit:
            return None
        if self.target is not None:
            return int(self.limit * self.target)
        return None

    def managed_target(self, process_memory: int, managed_in_memory: int) -> int | None:
        """The bytes of values to keep in memory now: the target, less the
        memory the process uses beyond its values (interpreter, libraries,
        a task's temporaries) while the spill step is on.  So spilling holds
        *process* memory at the target, instead of filling managed memory up
        to the target, passing the spill fraction and spilling down again."""
        target = self.target_bytes()
        if target is None or self.spill is None:
            return target
        unmanaged = max(0, process_memory - managed_in_memory)
        return max(0, target - unmanaged)

    def _bytes(self, frac: float | None) -> int | None:
        return None if frac is None or not self.limit else int(self.limit * frac)

    def decide(self, process_memory: int, managed_in_memory: int, paused: bool) -> MemoryDecision:
        """What to do now, given the process's memory, the bytes of values in
        memory (spillable) and whether the worker is paused."""
        if not self.limit:
            return MemoryDecision(0, False, False)
        spill = 0
        managed_target = self.target_bytes()
        if managed_target is not None and managed_in_memory > managed_target:
            spill = managed_in_memory - managed_target
        spill_at = self._bytes(self.spill)
        if spill_at is not None and process_memory > spill_at:
            # hysteresis: from the spill fraction down to the target one
            down_to = self._bytes(self.target if self.target is not None else self.spill)
            assert down_to is not None
            spill = max(spill, process_memory - down_to)
        spill = min(spill, managed_in_memory)
        pause_at = self._bytes(self.pause)
        now_paused = pause_at is not None and process_memory > pause_at
        return MemoryDecision(spill, now_paused, now_paused != paused)

    def process_memory_high(self, process_memory: int) -> bool:
        """Whether the process's memory is past the spill fraction (or, with
        spilling off, the pause one): time to collect garbage before
        spilling or pausing, as some of that memory may be unreachable
        cycles waiting for a collection."""
        at = self._bytes(self.spill if self.spill is not None else self.pause)
        return at is not None and process_memory > at

    def should_terminate(self, process_memory: int) -> bool:
        at = self._bytes(self.terminate)
        return at is not None and process_memory > at


@dataclass(frozen=True)
class MemoryDecision:
    """``spill``: bytes of values to move to disk now; ``paused``: whether the
    worker should be paused; ``changed``: that differs from what it is."""

    spill: int
    paused: bool
    changed: bool


__all__ = ["MemoryDecision", "MemoryPolicy", "fraction"]
