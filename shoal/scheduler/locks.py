"""Semaphores, locks and multi-locks on the scheduler: the requests of
``shoal.Semaphore``, ``shoal.Lock`` and ``shoal.MultiLock``.

A scheduler extension (see ``server.py``): ``rpc_semaphore_*`` and
``rpc_multi_lock_*`` answer clients; the bookkeeping is pure
(``semaphores.py``, ``multilocks.py``) and this module does the waiting, on
the event loop, up to each request's timeout (``waiters.py``).

A lease or multi-lock belongs to the client connection that took it (a
user's client, or the client a worker's tasks share).  It ends when released
or when that connection closes (its process died or closed the client).  A
lease also ends when the connection has sent nothing, not even a heartbeat,
for the lease timeout (setting ``scheduler.locks.lease-timeout``,
``null``/``inf``: never; checked every
``scheduler.locks.lease-validation-interval``); multi-locks have no timeout,
as in dask.distributed.  A lease given up for silence may mean two holders
at once if the silent one wakes up, as in dask.distributed: the scheduler
logs a warning when it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from shoal.scheduler import waiters
from shoal.scheduler.multilocks import MultiLocks
from shoal.scheduler.semaphores import Semaphores

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler.locks")


def _lease_timeout() -> float | None:
    from shoal import config

    value = config.get("scheduler.locks.lease-timeout")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "none")):
        return None
    return config.duration("scheduler.locks.lease-timeout")


class Locks:
    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.semaphores = Semaphores()
        self.multilocks = MultiLocks()
        self.free_waiters: dict[str, waiters.Waiters] = {}  # semaphore name -> acquirers
        self.multilock_waiting: dict[str, asyncio.Future[bool]] = {}  # request id -> its grant
        self.lease_timeout = _lease_timeout()
        self.validation_interval = config.duration("scheduler.locks.lease-validation-interval") or 10.0
        self._watching = False

    # -- semaphores (and locks) ----------------------------------------------------------

    async def rpc_semaphore_register(self, client_id: str, name: str, max_leases: int) -> bool:
        self.semaphores.register(name, max_leases)
        return True

    async def rpc_semaphore_acquire(self, client_id: str, name: str, max_leases: int, lease_id: str,
                                    timeout: float | None = None) -> bool:
        loop = self.server.loop
        deadline = waiters.deadline(loop, timeout)
        while not self.semaphores.try_acquire(name, max_leases, lease_id, client_id):
            queue = self.free_waiters.setdefault(name, waiters.Waiters())
            if not await waiters.woken(loop, queue, deadline):
                return False
        if client_id not in self.server.client_comms:  # its holder left while it waited
            self._released(name, lease_id)
            return False
        self._watch_leases()
        return True

    async def rpc_semaphore_release(self, client_id: str, name: str, lease_id: str) -> bool:
        if not self._released(name, lease_id):
            logger.warning("a lease of %r was released that was not held any more (ended by the "
                           "lease timeout, its holder leaving, or close)", name)
            return False
        return True

    async def rpc_semaphore_value(self, client_id: str, name: str) -> int:
        return self.semaphores.value(name)

    async def rpc_semaphore_close(self, client_id: str, name: str) -> bool:
        dropped = self.semaphores.close(name)
        if dropped:
            logger.warning("semaphore %r closed with %d leases still held", name, len(dropped))
        queue = self.free_waiters.pop(name, None)
        if queue is not None:
            queue.fail_all(RuntimeError(f"semaphore {name!r} was closed while waiting for a lease"))
        return True

    def _released(self, name: str, lease_id: str) -> bool:
        if not self.semaphores.release(name, lease_id):
            return False
        self._lease_freed(name)
        return True

    def _lease_freed(self, name: str) -> None:
        queue = self.free_waiters.get(name)
        if queue is not None and not queue.wake_one():
            del self.free_waiters[name]

    # -- multi-locks ----------------------------------------------------------------------

    async def rpc_multi_lock_acquire(self, client_id: str, names: list[str], id: str,
                                     timeout: float | None = None,
                                     num_locks: int | None = None) -> bool:
        if self.multilocks.request(id, client_id, list(names), num_locks):
            return True
        grant: asyncio.Future[bool] = self.server.loop.create_future()
        self.multilock_waiting[id] = grant
        try:
            await asyncio.wait_for(asyncio.shield(grant), timeout)
        except asyncio.TimeoutError:
            if not self.multilocks.granted(id):  # granted in the same instant: keep it
                self._grant(self.multilocks.release(id))
                return False
        finally:
            self.multilock_waiting.pop(id, None)
        return self.multilocks.granted(id)

    async def rpc_multi_lock_release(self, client_id: str, id: str) -> bool:
        if id not in self.multilocks.requests:
            raise ValueError("this MultiLock holds no locks (released already, or its "
                             "connection was lost)")
        self._grant(self.multilocks.release(id))
        return True

    def _grant(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            grant = self.multilock_waiting.get(rid)
            if grant is not None and not grant.done():
                grant.set_result(True)

    # -- holders that leave or fall silent --------------------------------------------------

    def client_left(self, client_id: str) -> None:
        """Leases and multi-locks die with the connection that took them;
        its waiting multi-lock requests are withdrawn."""
        for name, _ in self.semaphores.holder_left(client_id):
            self._lease_freed(name)
        for rid, req in list(self.multilocks.requests.items()):
            if req.holder == client_id:
                grant = self.multilock_waiting.get(rid)
                if grant is not None and not grant.done():
                    grant.set_result(False)
        self._grant(self.multilocks.holder_left(client_id))

    def _watch_leases(self) -> None:
        """Start checking for silent holders, once there are leases to check."""
        if self._watching or self.lease_timeout is None:
            return
        self._watching = True
        self.server._spawn(self._check_leases_periodically())

    async def _check_leases_periodically(self) -> None:
        assert self.lease_timeout is not None
        while self.server.status == "running":
            await asyncio.sleep(self.validation_interval)
            self.expire_silent(time.monotonic())

    def expire_silent(self, now: float) -> None:
        """End the leases of holders silent for longer than the lease timeout."""
        if self.lease_timeout is None:
            return
        clients = self.server.state.clients
        last_seen = {cid: c.last_seen for cid, c in clients.items() if cid in self.server.client_comms}
        for name, lease_id in self.semaphores.expire(last_seen, now, self.lease_timeout):
            logger.warning("lease %s of %r ended: its holder sent nothing for %s s "
                           "(scheduler.locks.lease-timeout); if it is still alive, two may now "
                           "hold the semaphore", lease_id, name, self.lease_timeout)
            self._lease_freed(name)

