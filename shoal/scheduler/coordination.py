"""Named coordination objects kept by the scheduler: queues, locks, events and
variables (``shoal.Queue``, ``Lock``, ``Event``, ``Variable``).

Clients (and tasks, through their worker's client) reach them by name with
requests; a blocking request (``queue_get``, ``lock_acquire``,
``event_wait``, ``variable_get``) waits on the scheduler's event loop, up to
its timeout, without holding a thread.

Values are either data (a ``Payload`` the scheduler never opens) or a
future's key.  A key held in a queue or variable is wanted by the scheduler
on the object's behalf, so its result is kept; when a client takes it, the
client's own claim is registered before the object's claim is dropped, so
the result never goes away in between.

Locks belong to the connection that acquired them and are released if it
goes away.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from shoal.errors import SchedulerError
from shoal.scheduler.records import ClientRecord

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

#: the pseudo-client that wants keys held in queues and variables
HOLDER = "coordination"


class _Waiters:
    """Futures waiting on one condition, woken in arrival order."""

    def __init__(self) -> None:
        self.futures: deque[asyncio.Future[Any]] = deque()

    def add(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        fut = loop.create_future()
        self.futures.append(fut)
        return fut

    def wake_one(self, value: Any = None) -> bool:
        while self.futures:
            fut = self.futures.popleft()
            if not fut.done():
                fut.set_result(value)
                return True
        return False

    def wake_all(self, value: Any = None) -> None:
        while self.wake_one(value):
            pass


class _Queue:
    def __init__(self, maxsize: int) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.maxsize = maxsize
        self.getters = _Waiters()
        self.putters = _Waiters()


class Coordination:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        self.queues: dict[str, _Queue] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.variable_waiters: dict[str, _Waiters] = {}
        self.events: dict[str, bool] = {}
        self.event_waiters: dict[str, _Waiters] = {}
        self.locks: dict[str, tuple[str, str]] = {}  # name -> (client id, holder token)
        self.lock_waiters: dict[str, _Waiters] = {}
        self.holder_counts: dict[str, int] = {}  # key -> items/variables holding it
        state = server.state
        if HOLDER not in state.clients:
            state.clients[HOLDER] = ClientRecord(HOLDER)
            state.pseudo_clients.add(HOLDER)

    # -- keys held on behalf of queues and variables --------------------------------

    def cluster_restarted(self) -> None:
        """``client.restart`` forgot every task, the keys held here too: a
        future taken from a queue or variable afterwards is lost."""
        self.holder_counts.clear()

    def _hold(self, item: dict[str, Any]) -> None:
        key = item.get("key")
        if key is None:
            return
        state = self.server.state
        if key not in state.tasks:
            raise SchedulerError(f"the future {key!r} is not known to the scheduler (released?)")
        n = self.holder_counts.get(key, 0)
        self.holder_counts[key] = n + 1
        if n == 0:
            state.want_keys(state.clients[HOLDER], [key], report=False)

    def _unhold(self, item: dict[str, Any] | None) -> None:
        key = None if item is None else item.get("key")
        if key is None:
            return
        n = self.holder_counts.get(key, 0) - 1
        if n > 0:
            self.holder_counts[key] = n
            return
        self.holder_counts.pop(key, None)
        state = self.server.state
        state.release_keys(state.clients[HOLDER], [key])  # ...then the object's
        self.server._schedule_flush()

    def _give(self, item: dict[str, Any], client_id: str) -> dict[str, Any]:
        """What a getter receives; a key also gets the getter's claim, and the
        getter is told where the key stands (it may have finished long ago)."""
        if "key" in item:
            c = self.server.state.clients.get(client_id)
            if c is not None:
                self.server.state.want_keys(c, [item["key"]], report=True)
        return item

    # -- queues ---------------------------------------------------------------------

    def _queue(self, name: str, maxsize: int = 0) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(maxsize)
        return q

    async def rpc_queue_create(self, client_id: str, name: str, maxsize: int = 0) -> bool:
        q = self._queue(name, maxsize)
        if maxsize and not q.maxsize:
            q.maxsize = maxsize
        return True

    async def rpc_queue_put(self, client_id: str, name: str, item: dict[str, Any],
                            timeout: float | None = None) -> bool:
        q = self._queue(name)
        deadline = self._deadline(timeout)
        while q.maxsize and len(q.items) >= q.maxsize:
            await self._wait(q.putters, deadline, f"queue {name!r} stayed full for {timeout} s")
        self._hold(item)
        q.items.append(item)
        q.getters.wake_one()
        return True

    async def rpc_queue_get(self, client_id: str, name: str, timeout: float | None = None,
                            batch: bool | int = False) -> list[dict[str, Any]]:
        q = self._queue(name)
        deadline = self._deadline(timeout)
        if batch is not False:
            n = len(q.items) if batch is True else int(batch)
            while len(q.items) < n:
                await self._wait(q.getters, deadline, f"queue {name!r} had fewer than {n} items for {timeout} s")
            taken = [q.items.popleft() for _ in range(n)]
        else:
            while not q.items:
                await self._wait(q.getters, deadline, f"queue {name!r} stayed empty for {timeout} s")
            taken = [q.items.popleft()]
        out = []
        for item in taken:
            out.append(self._give(item, client_id))
            self._unhold(item)
        q.putters.wake_all()
        return out

    async def rpc_queue_qsize(self, client_id: str, name: str) -> int:
        return len(self._queue(name).items)

    # -- variables ------------------------------------------------------------------

    async def rpc_variable_set(self, client_id: str, name: str, item: dict[str, Any]) -> bool:
        self._hold(item)
        old = self.variables.get(name)
        self.variables[name] = item
        self._unhold(old)
        _wake_all(self.variable_waiters, name)
        return True

    async def rpc_variable_get(self, client_id: str, name: str,
                               timeout: float | None = None) -> dict[str, Any]:
        deadline = self._deadline(timeout)
        while name not in self.variables:
            waiters = self.variable_waiters.setdefault(name, _Waiters())
            await self._wait(waiters, deadline, f"variable {name!r} was not set within {timeout} s")
        return self._give(self.variables[name], client_id)

    async def rpc_variable_delete(self, client_id: str, name: str) -> bool:
        self._unhold(self.variables.pop(name, None))
        return True

    # -- events ---------------------------------------------------------------------

    async def rpc_event_set(self, client_id: str, name: str) -> bool:
        self.events[name] = True
        _wake_all(self.event_waiters, name)
        return True

    async def rpc_event_clear(self, client_id: str, name: str) -> bool:
        self.events[name] = False
        return True

    async def rpc_event_is_set(self, client_id: str, name: str) -> bool:
        return self.events.get(name, False)

    async def rpc_event_wait(self, client_id: str, name: str, timeout: float | None = None) -> bool:
        if self.events.get(name, False):
            return True
        return await self._woken(self.event_waiters.setdefault(name, _Waiters()), self._deadline(timeout))

    # -- locks ----------------------------------------------------------------------

    async def rpc_lock_acquire(self, client_id: str, name: str, token: str, blocking: bool = True,
                               timeout: float | None = None) -> bool:
        deadline = self._deadline(timeout)
        while name in self.locks:
            if not blocking or not await self._woken(self.lock_waiters.setdefault(name, _Waiters()),
                                                      deadline):
                return False
        self.locks[name] = (client_id, token)
        return True

    async def rpc_lock_release(self, client_id: str, name: str, token: str) -> bool:
        owner = self.locks.get(name)
        if owner is None or owner[1] != token:
            raise SchedulerError(f"lock {name!r} is not held by this Lock object; cannot release it")
        self._release_lock(name)
        return True

    async def rpc_lock_locked(self, client_id: str, name: str) -> bool:
        return name in self.locks

    def _release_lock(self, name: str) -> None:
        del self.locks[name]
        waiters = self.lock_waiters.get(name)
        if waiters is not None and not waiters.wake_one():
            del self.lock_waiters[name]

    def client_left(self, client_id: str) -> None:
        """Locks die with the connection that held them."""
        for name, (owner, _) in list(self.locks.items()):
            if owner == client_id:
                self._release_lock(name)

    # -- helpers ----------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float | None:
        """When a wait of ``timeout`` seconds starting now ends (loop time).  A
        request may wait several times (woken, then beaten to the lock or the
        item by another); together they take no longer than its timeout."""
        return None if timeout is None else self.server.loop.time() + timeout

    async def _woken(self, waiters: _Waiters, deadline: float | None) -> bool:
        """Wait among ``waiters``; False if ``deadline`` passed first."""
        remaining = None if deadline is None else deadline - self.server.loop.time()
        if remaining is not None and remaining <= 0:
            return False
        try:
            await asyncio.wait_for(waiters.add(self.server.loop), remaining)
        except asyncio.TimeoutError:
            return False
        return True

    async def _wait(self, waiters: _Waiters, deadline: float | None, message: str) -> None:
        if not await self._woken(waiters, deadline):
            raise TimeoutError(message)


def _wake_all(waiters_by_name: dict[str, _Waiters], name: str) -> None:
    waiters = waiters_by_name.pop(name, None)
    if waiters is not None:
        waiters.wake_all()
