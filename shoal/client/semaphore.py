"""``Semaphore`` and ``Lock`` (a semaphore of one lease), as in
dask.distributed: leases of a named semaphore kept by the scheduler
(``shoal/scheduler/locks.py``).

    sem = Semaphore(max_leases=2, name="database")
    def query(sem, ...):
        with sem:          # at most two tasks inside at once, cluster-wide
            ...
    client.map(query, ..., sem=sem)

A lease belongs to the object that took it: ``release()`` gives back the
oldest lease this object holds, and raises ``RuntimeError("Released too
often")`` when it holds none.  A lease is held until it is released, the
semaphore is closed, the connection it was taken through closes (its client
closed, its process or worker died), or that connection stays silent for
``scheduler.locks.lease-timeout``.  An object that is dropped while holding
a lease does not give it back (in dask.distributed the object lives on,
refreshing its leases): use ``with``.

Lock and Semaphore share one namespace: ``Lock("x")`` is the semaphore "x"
with one lease.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Generator
from typing import Any

from shoal.client.named import (
    Acquired,
    Named,
    answer,
    run,
    seconds,
    settle,
    sync_options,
)
from shoal.errors import CommClosedError


def _refuse(scheduler_rpc: Any, loop: Any) -> None:
    if scheduler_rpc is not None:
        raise NotImplementedError("scheduler_rpc=: shoal's semaphores talk through a client; "
                                  "pass client=... instead")
    if loop is not None:
        raise NotImplementedError("loop=: shoal's semaphores use their client's event loop; "
                                  "pass client=... instead")


class Semaphore(Acquired, Named):
    """At most ``max_leases`` holders at a time, across the cluster:
    ``Semaphore(max_leases=1, name=None, scheduler_rpc=None, loop=None, *, client=None)``."""

    prefix = "semaphore"

    def __init__(self, max_leases: int = 1, name: str | None = None, scheduler_rpc: Any = None,
                 loop: Any = None, *, client: Any = None) -> None:
        _refuse(scheduler_rpc, loop)
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive int, got {max_leases!r}")
        super().__init__(name, client)
        self.max_leases = max_leases
        self.id = uuid.uuid4().hex
        # the leases this object holds, oldest first, with the client each came through
        self._leases: deque[tuple[Any, str]] = deque()

    def register(self, **kwargs: Any) -> Any:
        """Make the semaphore on the scheduler now (any call does it too);
        ``ValueError`` if the name is in use with another ``max_leases``."""
        options = sync_options("register", kwargs)
        client = self._bound()
        return run(client, self._register, client, **options)

    async def _register(self, client: Any) -> None:
        await self._ask(client, "semaphore_register", max_leases=self.max_leases)

    def __await__(self) -> Generator[Any, None, Semaphore]:
        return self._registered().__await__()

    async def _registered(self) -> Semaphore:
        await settle(self.register())
        return self

    def acquire(self, timeout: Any = None) -> Any:
        """Take a lease, waiting up to ``timeout`` (seconds or "200ms";
        None: for ever) for one to be free; True if taken, False if not."""
        client = self._bound()
        return run(client, self._acquire, client, seconds(timeout))

    async def _acquire(self, client: Any, timeout: float | None) -> bool:
        lease_id = uuid.uuid4().hex
        taken = await self._ask(client, "semaphore_acquire", timeout, max_leases=self.max_leases,
                                lease_id=lease_id, timeout=timeout)
        if taken:
            self._leases.append((client, lease_id))
        return bool(taken)

    def release(self) -> Any:
        """Give back this object's oldest lease; True if the scheduler still
        counted it (False: it had ended already, e.g. by the lease timeout)."""
        if not self._leases:
            raise RuntimeError(f"Released too often: {self!r} holds no lease")
        client, lease_id = self._leases.popleft()
        if client.status != "running":
            return answer(client, False)  # its connection closed: the lease ended with it
        return run(client, self._release, client, lease_id)

    async def _release(self, client: Any, lease_id: str) -> bool:
        try:
            return bool(await self._ask(client, "semaphore_release", lease_id=lease_id))
        except CommClosedError:
            return False  # the lease ended with the connection

    def get_value(self) -> Any:
        """How many leases are held now (by anyone)."""
        client = self._bound()
        return run(client, self._value, client)

    async def _value(self, client: Any) -> int:
        return int(await self._ask(client, "semaphore_value"))

    def close(self) -> Any:
        """Delete the semaphore on the scheduler: its leases end and waiting
        ``acquire`` calls fail (the name can be used afresh afterwards)."""
        client = self._bound()
        self._leases.clear()
        return run(client, self._close, client)

    async def _close(self, client: Any) -> None:
        await self._ask(client, "semaphore_close")

    def __reduce__(self) -> Any:
        return (Semaphore, (self.max_leases, self.name))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}, max_leases={self.max_leases}>"


class Lock(Semaphore):
    """Held by one ``Lock`` object at a time, across the cluster:
    ``Lock(name=None, scheduler_rpc=None, loop=None, *, client=None)``."""

    prefix = "lock"

    def __init__(self, name: str | None = None, scheduler_rpc: Any = None, loop: Any = None, *,
                 client: Any = None) -> None:
        super().__init__(1, name, scheduler_rpc, loop, client=client)

    def acquire(self, blocking: bool = True, timeout: Any = None) -> Any:  # type: ignore[override]
        """Take the lock; ``blocking=False``: only if it is free now.  True
        if taken, False if not (``timeout`` passed first)."""
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout=timeout)

    def locked(self) -> Any:
        """Whether someone holds the lock."""
        client = self._bound()
        return run(client, self._locked, client)

    async def _locked(self, client: Any) -> bool:
        return await self._value(client) == 1

    def __reduce__(self) -> Any:
        return (Lock, (self.name,))

    def __repr__(self) -> str:
        return f"<Lock: {self.name}>"
