"""The worker's values by key, in memory or spilled to disk: ``SpillBuffer``.

A ``MutableMapping`` that task threads, the event loop and the spill thread
use at once.  Values live in ``memory`` (least recently used first) with a
*weight*, their size in bytes; ``evict()`` moves the least recently used
ones to disk (``storage.DiskStore``) and reading a spilled key brings it back
transparently.  What to evict, and when, is decided elsewhere
(``memory.py`` decides, ``memory_manager.py`` acts): this class only keeps
the books and moves values.

Data flow::

    task result / fetched payload --set--> memory (LRU, weights)
    evict(): oldest value --serialize (out-of-band frames)--> DiskStore file
    data[key] on a spilled key: file --read (mmap if large)--> unpickle
        --> memory again, if that keeps memory under the target
    payload(key) (a peer's or a client's GetData): the serialized form,
        from memory or straight from its file: nothing comes back to memory

Rules:
1. A value that arrived serialized (``LazyValue``) is unpickled by its first
   reader, once, and spilled as the bytes it came as (no pickling again).
2. Disk I/O and (un)pickling happen outside the lock; a value is removed
   from memory only once its file is written, and only if the key still
   holds that same value (deleted or replaced meanwhile: the file goes).
3. A value that cannot be pickled stays in memory and is skipped by later
   evictions (it is not retried on every one, which would stop all
   spilling); a full disk (``OSError``) or ``max_spill`` ends an eviction.
4. Each move to or from disk is remembered in ``events`` (the last
   ``events_kept``) for the dashboard's task stream.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from shoal.errors import SerializationError
from shoal.protocol.serialize import Payload, dumps, loads
from shoal.worker.sizeof import sizeof
from shoal.worker.storage import DiskStore

logger = logging.getLogger("shoal.worker.memory")


_ABSENT = object()


class LazyValue:
    """A value that arrived serialized and has not been needed yet; it is
    unpickled by the first task that uses it, on a task thread."""

    __slots__ = ("payload",)

    def __init__(self, payload: Payload) -> None:
        self.payload = payload


class _Spilled:
    """Where a spilled value is: its file, its weight in memory and on disk."""

    __slots__ = ("disk", "memory", "name")

    def __init__(self, name: str, memory: int, disk: int) -> None:
        self.name = name
        self.memory = memory
        self.disk = disk


class SpillBuffer(MutableMapping[str, Any]):
    """The worker's data: ``key -> value``, in memory or on disk.

    directory: where spilled values go (made on the first spill); None: a
        callable giving it on first use, or no spilling at all.
    target: values read from disk come back to memory only while memory
        stays under this many bytes (None: always).
    max_spill: bytes on disk at most (None: no limit).
    on_spilled: called (from the evicting thread) with each key moved to
        disk, after it left memory (the worker closes its shared memory).
    events_kept: how many moves ``events`` remembers, each
        ``(sequence number, "disk-write" or "disk-read", key, start, stop,
        bytes on disk)`` with ``time.perf_counter`` times.
    """

    def __init__(
        self,
        directory: str | Callable[[], str] | None = None,
        *,
        target: int | None = None,
        max_spill: int | None = None,
        on_spilled: Callable[[str], None] | None = None,
        mmap_min_bytes: int | None = None,
        events_kept: int = 10_000,
    ) -> None:
        self._directory = directory
        self.target = target
        self.max_spill = max_spill
        self.on_spilled = on_spilled
        self._mmap_min_bytes = mmap_min_bytes
        self._disk_store: DiskStore | None = None
        self._lock = threading.RLock()
        # oldest first: a plain dict (a read moves its key to the end by
        # taking it out and in again), 50 bytes a key lighter than OrderedDict
        self.memory: dict[str, Any] = {}
        self.weights: dict[str, int] = {}
        self.memory_bytes = 0  # sum of weights of the values in memory
        self.disk: dict[str, _Spilled] = {}
        self.spilled_memory = 0  # what the spilled values weighed in memory
        self.spilled_disk = 0  # bytes of their files
        self.unspillable: set[str] = set()  # failed to pickle: left in memory
        self._evicting: set[str] = set()
        # counters since start, for metrics and benchmarks
        self.spill_count = self.unspill_count = 0
        self.spill_bytes = self.unspill_bytes = 0
        self.events: deque[tuple[int, str, str, float, float, int]] = deque(maxlen=events_kept)
        self._event_numbers = itertools.count()

    # ------------------------------------------------------------------ mapping

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def set(self, key: str, value: Any, nbytes: int | None = None) -> None:
        """Store ``value`` in memory; ``nbytes``: its size when already known."""
        if nbytes is None:
            nbytes = value.payload.nbytes if type(value) is LazyValue else sizeof(value)
        with self._lock:
            if key in self.memory or key in self.disk:  # rare: a value replaced
                self._discard(key)
            self.memory[key] = value
            self.weights[key] = nbytes
            self.memory_bytes += nbytes

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            if key in self.memory:
                value = self.memory[key] = self.memory.pop(key)  # now the most recent
                if type(value) is not LazyValue:
                    return value
                spilled = None
            else:
                spilled = self.disk[key]  # KeyError: not here
        if spilled is None:
            return self._unpickle_in_memory(key, value)
        return self._unspill(key, spilled)

    def _unpickle_in_memory(self, key: str, lazy: LazyValue) -> Any:
        loaded = loads(lazy.payload)
        if getattr(type(loaded), "_unpickle_per_read", False):
            return loaded  # actor handles: a fresh object for each reader
        with self._lock:
            if self.memory.get(key) is lazy:  # not dropped nor replaced meanwhile
                self.memory[key] = loaded
        return loaded

    def _event(self, action: str, key: str, start: float, nbytes: int) -> None:
        # deque.append and next(count) are atomic: no lock needed
        self.events.append((next(self._event_numbers), action, key, start, time.perf_counter(), nbytes))

    def _unspill(self, key: str, spilled: _Spilled) -> Any:
        start = time.perf_counter()
        try:
            payload = self._store().read(spilled.name)
        except FileNotFoundError:
            # brought back or dropped by another thread meanwhile
            with self._lock:
                if key in self.memory:
                    return self[key]
            raise KeyError(key) from None
        value = loads(payload)
        self._event("disk-read", key, start, spilled.disk)
        with self._lock:
            self.unspill_count += 1
            self.unspill_bytes += spilled.disk
            if self.disk.get(key) is not spilled or getattr(type(value), "_unpickle_per_read", False):
                return value
            if self.target is not None and self.memory_bytes + spilled.memory > self.target:
                # memory is full: bringing it back would only push another
                # value out (or this one, at once).  It stays on disk and
                # the reader's copy goes when the reader lets go of it.
                return value
            del self.disk[key]
            self.spilled_memory -= spilled.memory
            self.spilled_disk -= spilled.disk
            self.memory[key] = value
            self.weights[key] = spilled.memory
            self.memory_bytes += spilled.memory
        self._store().remove(spilled.name)
        return value

    def __delitem__(self, key: str) -> None:
        with self._lock:
            if key not in self.memory and key not in self.disk:
                raise KeyError(key)
            self._discard(key)

    def pop(self, key: str, *default: Any) -> Any:
        """Remove ``key``; returns what memory held (a spilled value is not
        read back just to be thrown away: its file goes, and None comes back)."""
        with self._lock:
            value = self.memory.pop(key, _ABSENT)
            if value is not _ABSENT:  # the common case, inline: one lookup each
                self.memory_bytes -= self.weights.pop(key)
                if self.unspillable:
                    self.unspillable.discard(key)
                return value
            if key in self.disk:
                self._discard(key)
                return None
        if default:
            return default[0]
        raise KeyError(key)

    def _discard(self, key: str) -> None:
        """Under the lock: forget ``key`` wherever it is."""
        if key in self.memory:
            del self.memory[key]
            self.memory_bytes -= self.weights.pop(key)
            if self.unspillable:
                self.unspillable.discard(key)
        spilled = self.disk.pop(key, None) if self.disk else None
        if spilled is not None:
            self.spilled_memory -= spilled.memory
            self.spilled_disk -= spilled.disk
            self._store().remove(spilled.name)

    def __contains__(self, key: object) -> bool:
        return key in self.memory or key in self.disk

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            keys = [*self.memory, *self.disk]
        return iter(keys)

    def __len__(self) -> int:
        return len(self.memory) + len(self.disk)

    def clear(self) -> None:
        with self._lock:
            self.memory.clear()
            self.weights.clear()
            self.memory_bytes = 0
            self.disk.clear()
            self.spilled_memory = self.spilled_disk = 0
            self.unspillable.clear()
        if self._disk_store is not None:
            self._disk_store.close()

    # ------------------------------------------------------------------ for the data plane

    def raw(self, key: str) -> Any:
        """What memory holds for ``key`` (a ``LazyValue`` stays one), without
        unpickling or reading the disk; KeyError if absent or spilled."""
        return self.memory[key]

    def payload(self, key: str) -> Any:
        """``key``'s value for sending: a ``Payload`` when it is held
        serialized (in memory or on disk: read from its file, mapped, and
        not brought back to memory), else the object itself."""
        with self._lock:
            if key in self.memory:
                value = self.memory[key]
                return value.payload if type(value) is LazyValue else value
            spilled = self.disk[key]
        start = time.perf_counter()
        try:
            payload = self._store().read(spilled.name)
            self._event("disk-read", key, start, spilled.disk)
            return payload
        except FileNotFoundError:
            return self.payload(key)  # brought back meanwhile (KeyError if dropped)

    # ------------------------------------------------------------------ eviction

    @property
    def spill_enabled(self) -> bool:
        return self._directory is not None

    def make_room(self, nbytes: int) -> int:
        """Before storing ``nbytes`` more: spill what would take memory past
        the target (the bytes freed).  A task thread calls this for its
        result, so the thread producing data is the one paying for the disk
        writes, and memory never runs ahead of the spilling."""
        if self.target is None or self._directory is None:
            return 0
        need = self.memory_bytes + nbytes - self.target
        return self.evict(need) if need > 0 else 0

    def evict(self, nbytes: int) -> int:
        """Move least recently used values to disk until ``nbytes`` of memory
        weight are freed or nothing more can go: returns the bytes freed."""
        freed = 0
        while freed < nbytes:
            done = self.evict_one()
            if done <= 0:
                break
            freed += done
        return freed

    def evict_one(self) -> int:
        """Spill the least recently used value that can go: its weight, 0 if
        none could (nothing left, disk full, ``max_spill`` reached)."""
        if self._directory is None:
            return 0
        while True:
            with self._lock:
                key = next((k for k in self.memory
                            if k not in self.unspillable and k not in self._evicting), None)
                if key is None:
                    return 0
                value = self.memory[key]
                weight = self.weights[key]
                self._evicting.add(key)
            try:
                outcome = self._write(key, value, weight)
            finally:
                with self._lock:
                    self._evicting.discard(key)
            if outcome is not None:
                return outcome

    def _write(self, key: str, value: Any, weight: int) -> int | None:
        """Spill one value: its weight, 0 to stop evicting, None to try the next."""
        start = time.perf_counter()
        try:
            payload = value.payload if type(value) is LazyValue else dumps(value)
        except SerializationError as e:
            logger.warning("cannot spill %r to disk (it stays in memory): %s", key, e)
            with self._lock:
                if self.memory.get(key) is value:
                    self.unspillable.add(key)
            return None
        size = payload.nbytes
        if self.max_spill is not None and self.spilled_disk + size > self.max_spill:
            logger.warning("spill to disk would pass max-spill (%d bytes): %r stays in memory",
                           self.max_spill, key)
            return 0
        store = self._store()
        try:
            name, written = store.write(payload)
        except OSError as e:
            logger.error("spill to disk failed (%s): %r stays in memory", e, key)
            return 0
        del payload
        with self._lock:
            if self.memory.get(key) is not value:  # dropped or replaced meanwhile
                stale = True
            else:
                stale = False
                del self.memory[key]
                self.memory_bytes -= self.weights.pop(key)
                self.disk[key] = _Spilled(name, weight, written)
                self.spilled_memory += weight
                self.spilled_disk += written
                self.spill_count += 1
                self.spill_bytes += written
        if stale:
            store.remove(name)
            return None
        self._event("disk-write", key, start, written)
        if self.on_spilled is not None:
            self.on_spilled(key)
        return weight

    def _store(self) -> DiskStore:
        store = self._disk_store
        if store is None:
            with self._lock:
                store = self._disk_store
                if store is None:
                    directory = self._directory
                    if directory is None:
                        raise RuntimeError("this SpillBuffer does not spill")
                    path = directory if isinstance(directory, str) else directory()
                    store = DiskStore(path) if self._mmap_min_bytes is None else DiskStore(
                        path, self._mmap_min_bytes)
                    self._disk_store = store
        return store

    def close(self) -> None:
        """Drop everything and remove the spill files."""
        self.clear()

    def __repr__(self) -> str:
        return (f"<SpillBuffer {len(self.memory)} in memory ({self.memory_bytes} bytes), "
                f"{len(self.disk)} on disk ({self.spilled_disk} bytes)>")


__all__ = ["LazyValue", "SpillBuffer"]
