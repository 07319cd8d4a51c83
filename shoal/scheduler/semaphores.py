"""Leases of named semaphores (``shoal.Semaphore``; ``shoal.Lock`` is a
semaphore of one lease): who holds what, kept by the scheduler.  Pure: no
I/O, no clock (times come in as arguments); the waiting is done by
``locks.py``.

Rules:
1. A semaphore's ``max_leases`` is fixed when its name is first used;
   using the name with another ``max_leases`` is a ``ValueError``.
2. A lease is a lease id (made by the ``Semaphore`` object that asks) and its
   *holder*: the client connection that asked.  Taking a lease id already
   held succeeds again (a retried request takes nothing more).
3. Leases end by ``release``, when their holder's connection goes
   (``holder_left``), when their holder has been silent longer than the lease
   timeout (``expire``), or when the semaphore is closed.  Releasing a lease
   that already ended returns False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class SemaphoreRecord:
    __slots__ = ("leases", "max_leases")

    def __init__(self, max_leases: int) -> None:
        self.max_leases = max_leases
        self.leases: dict[str, str] = {}  # lease id -> holder

    def __repr__(self) -> str:
        return f"<SemaphoreRecord {len(self.leases)}/{self.max_leases}>"


class Semaphores:
    def __init__(self) -> None:
        self.records: dict[str, SemaphoreRecord] = {}

    def register(self, name: str, max_leases: int) -> SemaphoreRecord:
        """The semaphore ``name``, made with ``max_leases`` if it is new."""
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive int, got {max_leases!r}")
        record = self.records.get(name)
        if record is None:
            record = self.records[name] = SemaphoreRecord(max_leases)
        elif record.max_leases != max_leases:
            raise ValueError(
                f"Inconsistent max leases for {name!r}: {max_leases}, expected: {record.max_leases} "
                "(a Lock is a semaphore of 1 lease, sharing names with Semaphores)")
        return record

    def try_acquire(self, name: str, max_leases: int, lease_id: str, holder: str) -> bool:
        """Take lease ``lease_id`` for ``holder`` if one is free."""
        record = self.register(name, max_leases)
        if lease_id in record.leases:
            return True
        if len(record.leases) >= record.max_leases:
            return False
        record.leases[lease_id] = holder
        return True

    def release(self, name: str, lease_id: str) -> bool:
        """End lease ``lease_id``; False if it was not held (any more)."""
        record = self.records.get(name)
        if record is None or lease_id not in record.leases:
            return False
        del record.leases[lease_id]
        return True

    def value(self, name: str) -> int:
        """How many leases of ``name`` are held."""
        record = self.records.get(name)
        return 0 if record is None else len(record.leases)

    def close(self, name: str) -> list[str]:
        """Forget ``name``; the ids of the leases that were still held."""
        record = self.records.pop(name, None)
        return [] if record is None else list(record.leases)

    def holder_left(self, holder: str) -> list[tuple[str, str]]:
        """End every lease of ``holder``: ``[(name, lease id)]``."""
        return self._end_where(lambda h: h == holder)

    def expire(self, last_seen: Mapping[str, float], now: float, timeout: float
               ) -> list[tuple[str, str]]:
        """End the leases of holders not heard from for more than ``timeout``
        seconds before ``now`` (``last_seen``: holder -> when it last spoke;
        a holder missing there is gone): ``[(name, lease id)]``."""
        def silent(holder: str) -> bool:
            seen = last_seen.get(holder)
            return seen is None or now - seen > timeout

        return self._end_where(silent)

    def _end_where(self, ends: Callable[[str], bool]) -> list[tuple[str, str]]:
        ended = []
        for name, record in self.records.items():
            for lease_id, holder in list(record.leases.items()):
                if ends(holder):
                    del record.leases[lease_id]
                    ended.append((name, lease_id))
        return ended
