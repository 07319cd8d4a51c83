"""The worker's memory manager: measures, asks ``memory.MemoryPolicy``, acts.

It owns the worker's data store (``spill.SpillBuffer``) and a thread, the
*memory monitor*, which every ``worker.memory.monitor-interval`` (and at
once when values are stored past the target) measures the process's memory,
spills least recently used values to disk when the policy says so, and
pauses or resumes the worker.  Spilling happens on that thread, never on the
event loop, which keeps serving peers and the scheduler meanwhile.

Data flow::

    server stores a value --data_added()--> wake the monitor thread
    monitor thread: process_memory() (past the spill fraction: a full
        garbage collection first, at most once a second, and measure again)
        + SpillBuffer.memory_bytes
        --MemoryPolicy.decide--> SpillBuffer.evict(n)  (disk writes here)
                             \\-> loop: server._memory_paused(True/False)
    heartbeat <--metrics()-- managed / spilled / process memory

``process_memory(pid)`` is also what the nanny compares with the terminate
fraction: the resident set size, with the shared-memory files the process
holds (shoal's ``memfd`` values) counted at their full size instead of the
pages it happened to touch, so that values kept in shared memory count
against the limit like any other.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from typing import Any

from shoal.worker.memory import MemoryPolicy
from shoal.worker.spill import SpillBuffer

logger = logging.getLogger("shoal.worker.memory")

_SHARED_PREFIXES = ("/memfd:", "/dev/shm/")
#: bytes of dependencies fetched at once without a memory limit
DEFAULT_FLIGHT_BYTES = 256 * 1024 * 1024
#: seconds between two full garbage collections the memory monitor runs
GC_EVERY = 1.0


def _rss_and_shmem(pid: int | str) -> tuple[int, int]:
    """The resident set (``VmRSS``) and its resident shared-memory pages
    (``RssShmem``), in bytes, from ``/proc/<pid>/status`` (Linux only)."""
    rss = shmem = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"RssShmem:"):
                    shmem = int(line.split()[1]) * 1024
                    break  # RssShmem follows VmRSS
    except (OSError, ValueError, IndexError):
        import psutil

        return int(psutil.Process(None if pid == "self" else int(pid)).memory_info().rss), 0
    return rss, shmem


def shared_file_bytes(pid: int | str) -> int:
    """Bytes of the shared-memory files (``memfd``, ``/dev/shm``) that
    process ``pid`` holds open, each counted once (Linux only; else 0)."""
    directory = f"/proc/{pid}/fd"
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        fds = os.listdir(directory)
    except OSError:
        return 0
    for fd in fds:
        path = f"{directory}/{fd}"
        try:
            target = os.readlink(path)
            if not target.startswith(_SHARED_PREFIXES):
                continue
            st = os.stat(path)
        except OSError:
            continue  # closed meanwhile
        ident = (st.st_dev, st.st_ino)
        if ident not in seen:
            seen.add(ident)
            total += st.st_size
    return total


def process_memory(pid: int | None = None, shared_bytes: int | None = None) -> int:
    """Memory counted against a process's limit: its resident set, minus the
    resident part of its shared-memory mappings, plus the full size of the
    shared-memory files it holds (``shared_bytes`` if the caller knows it,
    else found in ``/proc``).  Other systems: the resident set size."""
    if sys.platform != "linux":
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    who: int | str = "self" if pid is None else pid
    rss, shmem = _rss_and_shmem(who)  # one read of /proc/<pid>/status (10 times a second)
    if shared_bytes is None:
        shared_bytes = shared_file_bytes(who)
    return max(0, rss - shmem) + shared_bytes


def policy_from_config(limit: int) -> MemoryPolicy:
    from shoal import config

    return MemoryPolicy.from_settings(limit, {
        name: config.get(f"worker.memory.{name}") for name in ("target", "spill", "pause", "terminate")
    })


class WorkerMemoryManager:
    """Spilling and pausing for one worker (``server``: a ``WorkerServer``)."""

    def __init__(self, server: Any, limit: int) -> None:
        from shoal import config

        self.server = server
        self.policy = policy_from_config(limit)
        self.interval = config.duration("worker.memory.monitor-interval") or 0.1
        max_spill = config.get("worker.memory.max-spill")
        spill = self.policy.spills
        self.data = SpillBuffer(
            self._spill_directory if spill else None,
            target=self.policy.target_bytes(),
            max_spill=None if max_spill in (None, False) else config.size("worker.memory.max-spill"),
            on_spilled=self._spilled,
            mmap_min_bytes=config.size("worker.memory.spill-mmap-min-bytes"),
            events_kept=int(config.get("worker.task-stream-length")),
        )
        self.paused = False
        self.process_memory = 0  # at the last measure
        self.peak_process_memory = 0  # the highest measured
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_collection = float("-inf")

    def _spill_directory(self) -> str:
        from shoal.worker.plugins import worker_directory

        return os.path.join(worker_directory(self.server), "storage")

    def state_options(self) -> dict[str, Any]:
        """For the state machine: fetch at most ``worker.memory.transfer`` of
        the limit at once (dask's rule), so that dependencies in flight
        cannot fill the memory by themselves."""
        from shoal import config
        from shoal.worker.memory import fraction

        share = fraction("transfer", config.get("worker.memory.transfer"))
        if not self.policy.limit or share is None:
            return {}
        return {"max_flight_bytes": min(DEFAULT_FLIGHT_BYTES, int(self.policy.limit * share))}

    # ------------------------------------------------------------------ on the loop

    def start(self) -> None:
        if not self.policy.limit:
            return  # no limit: nothing to watch
        self._thread = threading.Thread(target=self._monitor, name="shoal-memory", daemon=True)
        self._thread.start()

    def data_added(self) -> None:
        """Values were stored: spill now if managed memory passed the target."""
        target = self.data.target
        if target is not None and self.data.memory_bytes > target and self._thread is not None:
            self._wake.set()

    def metrics(self) -> dict[str, Any]:
        """For the heartbeat, in dask's layout (``scheduler_info()``)."""
        data = self.data
        return {
            "memory": self.measure(),
            "spilled_bytes": {"memory": data.spilled_memory, "disk": data.spilled_disk},
            "spilled_keys": len(data.disk),
            "spill_counts": {"spilled": data.spill_count, "unspilled": data.unspill_count},
            "paused": self.paused,
        }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.data.close()

    # ------------------------------------------------------------------ anywhere

    def measure(self) -> int:
        shared = sum(r.size for r in list(self.server.shared.values()))
        try:
            self.process_memory = process_memory(shared_bytes=shared)
        except Exception:  # psutil missing a reading: keep the last one
            pass
        self.peak_process_memory = max(self.peak_process_memory, self.process_memory)
        return self.process_memory

    # ------------------------------------------------------------------ the monitor thread

    def _monitor(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._step()
            except Exception:  # the monitor must outlive any one failure
                logger.exception("worker %s: memory monitor step failed", self.server.address)

    def _step(self) -> None:
        data = self.data
        memory = self.measure()
        if self.policy.process_memory_high(memory) and self._collect_garbage():
            memory = self.measure()
        data.target = self.policy.managed_target(memory, data.memory_bytes)
        decision = self.policy.decide(memory, data.memory_bytes, self.paused)
        if decision.changed:
            self._set_paused(decision.paused)
        if decision.spill <= 0 or not data.spill_enabled:
            return
        freed = 0
        while freed < decision.spill and not self._stop.is_set():
            weight = data.evict_one()
            if weight <= 0:
                if data.memory_bytes and freed == 0:
                    logger.debug("worker %s: nothing more can be spilled", self.server.address)
                break
            freed += weight
            # spilling may take a while: let the loop pause the worker meanwhile
            if not self.paused and self.policy.decide(self.measure(), data.memory_bytes,
                                                      False).paused:
                self._set_paused(True)

    def _collect_garbage(self) -> bool:
        """A full collection, at most once every ``GC_EVERY`` seconds: whether
        one ran.  Unreachable cycles (a task's temporaries that refer to each
        other) hold memory until a full collection, which a worker's raised
        first-generation threshold (``admin.gc.threshold``) makes rarer;
        spilling or pausing for memory that is garbage would be wrong."""
        now = time.monotonic()
        if now - self._last_collection < GC_EVERY:
            return False
        self._last_collection = now
        found = gc.collect()
        logger.debug("worker %s: memory past the spill threshold: a garbage collection "
                     "found %d objects in %.3f s", self.server.address, found,
                     time.monotonic() - now)
        return True

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            logger.warning("worker %s: process memory %.0f MB is past %.0f%% of its limit "
                           "(%.0f MB): pausing (no new tasks, no fetches)", self.server.address,
                           self.process_memory / 1e6, 100 * (self.policy.pause or 0),
                           self.policy.limit / 1e6)
        else:
            logger.warning("worker %s: process memory %.0f MB is back under the pause "
                           "threshold: resuming", self.server.address, self.process_memory / 1e6)
        try:
            self.server.loop.call_soon_threadsafe(self.server._memory_paused, paused)
        except RuntimeError:
            pass  # the loop is closed: the worker is shutting down

    def _spilled(self, key: str) -> None:
        """A value left memory for disk: its shared memory goes (on the loop)."""
        if key in self.server.shared:
            try:
                self.server.loop.call_soon_threadsafe(self.server._spilled_shared, key)
            except RuntimeError:
                pass


__all__ = ["WorkerMemoryManager", "policy_from_config", "process_memory", "shared_file_bytes"]
