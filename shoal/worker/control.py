"""What the scheduler asks of a worker to run the cluster: run a function
here outside the task system (``client.run``), restart (``client.restart``),
fetch copies of results from peers (``rebalance``, ``replicate``,
``retire_workers``).

A worker extension (``WorkerServer.add_extension``): each ``rpc_<method>``
answers the scheduler's request of that name.

Data flow::

    client --run(function Payload)--> scheduler --run--> here: answer ["ok", Payload]
                                                              or ["error", exc, tb, text]
    scheduler --gather_copies({key: holders})--> here --GetData--> holders
    here --ReplicasAdded--> scheduler, then the answer (same connection, in order)
    scheduler --restart--> here: answer, close, exit with RESTART_EXIT_CODE
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from shoal.errors import SerializationError
from shoal.protocol.serialize import Payload, dumps, dumps_exception, loads
from shoal.worker.executor import LazyValue

if TYPE_CHECKING:
    from shoal.worker.server import WorkerServer

logger = logging.getLogger("shoal.worker")

#: arguments a function given to ``client.run`` may take to receive the worker
WORKER_ARGUMENTS = ("dask_worker", "dask_scheduler")


def wants_worker(function: Any) -> list[str]:
    """The names among ``WORKER_ARGUMENTS`` that ``function`` accepts."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return []
    return [name for name in WORKER_ARGUMENTS if name in params]


class WorkerControl:
    def __init__(self, server: WorkerServer) -> None:
        self.server = server

    # -- client.run --------------------------------------------------------------------

    async def rpc_run(self, function: Payload, args: Payload, wait: bool = True) -> list[Any]:
        """Run ``function(*args, **kwargs)`` on this worker's event loop, outside
        the task system.  A coroutine function is awaited (``wait``) or left
        running in the background; a plain function with ``wait=False`` runs
        right after this answer.  Errors come back pickled, never raised
        here, so that one worker's failure is the client's to handle."""
        try:
            func = loads(function)
            a, kw = loads(args)
            for name in wants_worker(func):
                kw[name] = self.server
        except Exception as e:
            return ["error", *dumps_exception(e)]
        name = getattr(func, "__qualname__", repr(func))
        if not wait:
            self.server.loop.call_soon(self._start_in_background, func, a, kw, name)
            return ["ok", dumps(None)]
        try:
            result = func(*a, **kw)
            if inspect.isawaitable(result):
                result = await result
        except Exception as e:
            logger.warning("worker %s: client.run of %s failed: %r", self.server.address, name, e)
            return ["error", *dumps_exception(e)]
        try:
            return ["ok", dumps(result)]
        except SerializationError as e:
            return ["error", *dumps_exception(e)]

    def _start_in_background(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                             name: str) -> None:
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                self.server._spawn(self._finish_in_background(result, name))
        except Exception:
            logger.exception("worker %s: client.run(wait=False) of %s failed",
                             self.server.address, name)

    async def _finish_in_background(self, awaitable: Any, name: str) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("worker %s: client.run(wait=False) of %s failed",
                             self.server.address, name)

    # -- client.restart ----------------------------------------------------------------

    def rpc_restart(self, reason: str = "") -> str:
        """Leave and have the supervisor start a fresh worker process: the
        answer goes out first, then the worker closes and its process exits
        with ``RESTART_EXIT_CODE``, which the supervisor takes as a request,
        not as a crash.  A worker with no supervisor just exits."""
        server = self.server
        server.restart_requested = True
        server._spawn(self._close_after_answer(reason or "restart requested by the scheduler"))
        return "OK"

    async def _close_after_answer(self, reason: str) -> None:
        # this task's first step runs after the request's handler step, which
        # queued the answer: send it before closing stops all sending
        self.server._flush()
        await self.server.close(reason)

    # -- rebalance, replicate, retire_workers ---------------------------------------

    async def rpc_gather_copies(self, who_has: dict[str, list[str]], nbytes: dict[str, int],
                                types: dict[str, str]) -> list[str]:
        """Fetch copies of these keys from the workers holding them (each
        holder in turn until one has it), keep them and announce them to the
        scheduler (``ReplicasAdded``, sent ahead of this answer).  Keys
        computed or fetched here for a task meanwhile are left to that.
        Answers the keys now held here."""
        server = self.server
        state = server.state
        wanted = [k for k in who_has if state.accepts_copy(k)]
        sizes = {k: state.tasks[k].nbytes for k in wanted if k in state.tasks}  # here already
        pending = {k: [w for w in who_has[k] if w != server.address] for k in wanted if k not in sizes}
        received: dict[str, Payload] = {}
        while pending:
            by_holder: dict[str, list[str]] = {}
            for key, holders in list(pending.items()):
                if holders:
                    by_holder.setdefault(holders.pop(0), []).append(key)
                else:
                    del pending[key]  # no holder had it
            replies = await asyncio.gather(*(self._fetch(w, keys) for w, keys in by_holder.items()))
            for data in replies:
                for key, payload in data.items():
                    received[key] = payload
                    pending.pop(key, None)
        if server.status != "running":
            return []
        for key, payload in received.items():
            if key not in state.tasks:
                server.data[key] = LazyValue(payload)
            sizes[key] = nbytes.get(key) or payload.nbytes
        kept = state.copies_received(sizes, types)
        for key in received:
            if key not in kept and key not in server.data:
                server._drop_shared(key)
        server._carry_out()
        return kept

    async def _fetch(self, worker: str, keys: list[str]) -> dict[str, Payload]:
        try:
            reply = await self.server._fetch(worker, keys)
        except (OSError, TimeoutError) as e:
            logger.warning("worker %s: could not copy %d keys from %s: %s",
                           self.server.address, len(keys), worker, e)
            return {}
        return dict(reply.data)
