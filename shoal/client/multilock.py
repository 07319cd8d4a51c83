"""``MultiLock``: several named locks taken all at once or not at all, as in
dask.distributed (the scheduler side is ``shoal/scheduler/multilocks.py``,
which explains why waiting MultiLocks cannot deadlock each other).

    with MultiLock(["accounts", "ledger"]):
        ...                                  # holds both

MultiLock names are their own namespace: ``MultiLock(["x"])`` and
``Lock("x")`` do not exclude each other (as in dask.distributed).  What a
MultiLock holds goes back when it is released, or when the connection it
was taken through closes (not when the object is dropped: use ``with``).
"""

from __future__ import annotations

import uuid
from typing import Any

from shoal.client.named import (
    Acquired,
    Bound,
    answer,
    run,
    seconds,
)


class MultiLock(Acquired, Bound):
    """Locks ``names`` together: ``MultiLock(names=[], client=None)``."""

    def __init__(self, names: list[str] | None = None, client: Any = None) -> None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names or []):
            raise TypeError(f"names must be a list of lock names (str), got {names!r}")
        super().__init__(client)
        self.names = list(names or [])
        self.id = uuid.uuid4().hex
        self._held: tuple[Any, str] | None = None  # (client, request id) while acquired

    def acquire(self, blocking: bool = True, timeout: Any = None, num_locks: int | None = None) -> Any:
        """Take ``num_locks`` (default: all) of the locks, waiting up to
        ``timeout`` until that many are free together; True if taken, False
        if not (then none is held).  ``blocking=False``: only if free now."""
        limit = seconds(timeout)
        if not blocking:
            if limit is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            limit = 0
        if self._held is not None:
            raise RuntimeError(f"{self!r} is acquired already; release() it first")
        client = self._bound()
        return run(client, self._acquire, client, limit, num_locks)

    async def _acquire(self, client: Any, timeout: float | None, num_locks: int | None) -> bool:
        wait = None if timeout is None else timeout + 5.0
        taken = await client._request("multi_lock_acquire", wait, names=self.names, id=self.id,
                                      timeout=timeout, num_locks=num_locks)
        if taken:
            self._held = (client, self.id)
        return bool(taken)

    def release(self) -> Any:
        """Give the locks back; ``ValueError`` if this object holds none."""
        if self._held is None:
            raise ValueError("Lock is not yet acquired")
        (client, request_id), self._held = self._held, None
        if client.status != "running":
            return answer(client, None)  # its connection closed: the locks went with it
        return run(client, self._release, client, request_id)

    async def _release(self, client: Any, request_id: str) -> None:
        await client._request("multi_lock_release", id=request_id)

    def locked(self) -> bool:
        """Whether this object holds its locks."""
        return self._held is not None

    def __reduce__(self) -> Any:
        return (MultiLock, (self.names,))

    def __repr__(self) -> str:
        return f"<MultiLock: {self.names}>"
