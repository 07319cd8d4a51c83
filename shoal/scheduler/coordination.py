"""Named coordination objects kept by the scheduler: queues, events and
variables (``shoal.Queue``, ``Event``, ``Variable``; locks and semaphores are
in ``locks.py``).

Clients (and tasks, through their worker's client) reach them by name with
requests; a blocking request (``queue_get``, ``event_wait``,
``variable_get``) waits on the scheduler's event loop, up to its timeout,
without holding a thread (``waiters.py``).

Values are either data (a ``Payload`` the scheduler never opens) or a
future's key.  A key held in a queue or variable is wanted by the scheduler
on the object's behalf, so its result is kept; when a client takes it, the
client's own claim is registered before the object's claim is dropped, so
the result never goes away in between.  A future's key that the scheduler
does not know yet (put by a client other than the one that submitted it,
whose submission is still on its way) is waited for up to the request's
timeout.

A queue exists from its first use.  Each ``Queue`` object that registers it
(``queue_create``) counts as a reference; ``Queue.close`` drops one, and the
last one deletes the queue, its items and their futures (as in
dask.distributed).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from shoal.scheduler.records import ClientRecord
from shoal.scheduler.waiters import Waiters, deadline, wait, woken

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

#: the pseudo-client that wants keys held in queues and variables
HOLDER = "coordination"


class _Queue:
    def __init__(self, maxsize: int) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.maxsize = maxsize
        self.getters = Waiters()
        self.putters = Waiters()


class Coordination:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        self.queues: dict[str, _Queue] = {}
        self.queue_refs: dict[str, int] = {}  # name -> Queue objects that registered it
        self.variables: dict[str, dict[str, Any]] = {}
        self.variable_waiters: dict[str, Waiters] = {}
        self.events: dict[str, bool] = {}
        self.event_waiters: dict[str, Waiters] = {}
        self.holder_counts: dict[str, int] = {}  # key -> items/variables holding it
        state = server.state
        if HOLDER not in state.clients:
            state.clients[HOLDER] = ClientRecord(HOLDER)
            state.pseudo_clients.add(HOLDER)

    # -- keys held on behalf of queues and variables --------------------------------

    async def _known(self, item: dict[str, Any], until: float | None) -> None:
        """Wait (up to ``until``) for the scheduler to know the future in
        ``item``: another client's submission may still be on its way."""
        key = item.get("key")
        loop = self.server.loop
        while key is not None and key not in self.server.state.tasks:
            if until is not None and loop.time() >= until:
                raise TimeoutError(f"Task {key!r} unknown to the scheduler (was the future released "
                                   "or cancelled?)")
            await asyncio.sleep(0.01)
    def cluster_restarted(self) -> None:
        """``client.restart`` forgot every task, the keys held here too: a
        future taken from a queue or variable afterwards is lost."""
        self.holder_counts.clear()

    def _hold(self, item: dict[str, Any]) -> None:
        key = item.get("key")
        if key is None:
            return
        state = self.server.state
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
        self.queue_refs[name] = self.queue_refs.get(name, 0) + 1
        return True

    async def rpc_queue_release(self, client_id: str, name: str) -> bool:
        """One ``Queue`` object is closed; the last one deletes the queue."""
        n = self.queue_refs.get(name, 0) - 1
        if n > 0:
            self.queue_refs[name] = n
            return True
        self.queue_refs.pop(name, None)
        q = self.queues.pop(name, None)
        if q is not None:
            for item in q.items:
                self._unhold(item)
            closed = RuntimeError(f"queue {name!r} was closed")
            q.getters.fail_all(closed)
            q.putters.fail_all(closed)
        return True

    async def rpc_queue_put(self, client_id: str, name: str, item: dict[str, Any],
                            timeout: float | None = None) -> bool:
        q = self._queue(name)
        loop = self.server.loop
        until = deadline(loop, timeout)
        await self._known(item, until)
        while q.maxsize and len(q.items) >= q.maxsize:
            await wait(loop, q.putters, until, f"queue {name!r} stayed full for {timeout} s")
        if self.queues.get(name) is not q:
            raise RuntimeError(f"queue {name!r} was closed")
        self._hold(item)
        q.items.append(item)
        q.getters.wake_one()
        return True

    async def rpc_queue_get(self, client_id: str, name: str, timeout: float | None = None,
                            batch: bool | int = False) -> list[dict[str, Any]]:
        q = self._queue(name)
        loop = self.server.loop
        until = deadline(loop, timeout)
        if batch is not False:
            n = len(q.items) if batch is True else int(batch)
            while len(q.items) < n:
                await wait(loop, q.getters, until, f"queue {name!r} had fewer than {n} items for {timeout} s")
            taken = [q.items.popleft() for _ in range(n)]
        else:
            while not q.items:
                await wait(loop, q.getters, until, f"queue {name!r} stayed empty for {timeout} s")
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

    async def rpc_variable_set(self, client_id: str, name: str, item: dict[str, Any],
                               timeout: float | None = None) -> bool:
        await self._known(item, deadline(self.server.loop, timeout))
        self._hold(item)
        old = self.variables.get(name)
        self.variables[name] = item
        self._unhold(old)
        _wake_all(self.variable_waiters, name)
        return True

    async def rpc_variable_get(self, client_id: str, name: str,
                               timeout: float | None = None) -> dict[str, Any]:
        loop = self.server.loop
        until = deadline(loop, timeout)
        while name not in self.variables:
            waiters = self.variable_waiters.setdefault(name, Waiters())
            await wait(loop, waiters, until, f"variable {name!r} was not set within {timeout} s")
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
        loop = self.server.loop
        return await woken(loop, self.event_waiters.setdefault(name, Waiters()), deadline(loop, timeout))


def _wake_all(waiters_by_name: dict[str, Waiters], name: str) -> None:
    waiters = waiters_by_name.pop(name, None)
    if waiters is not None:
        waiters.wake_all()
