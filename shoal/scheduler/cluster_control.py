"""Running the cluster from a client: run a function on workers
(``client.run``), restart them (``restart``, ``restart_workers``), retire
them (``retire_workers``), and move copies of results between them
(``rebalance``, ``replicate``).

A scheduler extension (see ``server.py``): each ``rpc_<method>`` answers the
client request of that name.  Decisions about where copies go are pure
(``replicas.py``); state changes go through ``control_state.py``
(``set_retiring``, ``drop_replicas``, ``release_all``) and
``SchedulerState.remove_worker``.

Rules:
1. The scheduler never opens user data: ``run``'s function, arguments,
   results and errors pass through as ``Payload`` objects.
2. A restart is asked of the worker (request ``restart``): it answers, closes
   and exits with ``RESTART_EXIT_CODE``, which its supervisor takes as a
   request for a fresh process, not as a crash (``shoal/cluster/process.py``).
   A worker with no supervisor just leaves.
3. Retiring is graceful: a retiring worker gets no new tasks; every result
   only it holds is copied elsewhere first; only then, with no wait in
   between, is it removed, so nothing is lost or recomputed.  It then exits
   cleanly (exit code 0), which its supervisor does not undo.
4. Data moves (``rebalance``, ``replicate``, ``retire_workers``) run one at
   a time; a recipient fetches each copy straight from a holder.

Data flow::

    client --run--> here --run--> workers --["ok", Payload] | ["error", ...]--> client
    client --restart--> here: release_all (clients hear TasksCancelled)
                        --restart--> workers --exit 75--> supervisor --fresh worker--> here
    here --gather_copies({key: holders})--> recipient --GetData--> holder
    recipient --ReplicasAdded, then the answer--> here (--FreeKeys--> the original, on a move)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.errors import SchedulerError, WorkerRequestError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps
from shoal.scheduler import control_state, replicas
from shoal.scheduler.queries import worker_info
from shoal.scheduler.records import WorkerRecord

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")

RESTART_REASON = "the cluster restarted (client.restart); run your work again"

#: keyword arguments of dask's ``workers_to_close`` that retire_workers accepts
_CLOSE_CHOICE = frozenset({"n", "target", "minimum", "memory_ratio", "key", "attribute"})


class ClusterControl:
    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.move_timeout = config.duration("scheduler.data-move-timeout") or 60.0
        self.move_attempts = max(1, int(config.get("scheduler.data-move-attempts")))
        self._moving = asyncio.Lock()  # one data move (rebalance, replicate, retire) at a time
        self._membership: list[asyncio.Future[None]] = []  # woken when workers join or leave

    # -- hooks --------------------------------------------------------------------------

    def worker_joined(self, address: str) -> None:
        self._wake()

    def worker_left(self, address: str) -> None:
        self._wake()

    def _wake(self) -> None:
        waiters, self._membership = self._membership, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _until(self, condition: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until ``condition()`` (checked whenever workers join or leave),
        at most until ``deadline`` (loop time; None: no limit); whether it holds."""
        loop = self.server.loop
        while not condition():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._membership.append(fut)
            try:
                await asyncio.wait_for(fut, left)
            except asyncio.TimeoutError:
                pass
        return True

    # -- client.run -------------------------------------------------------------------

    async def rpc_run(self, client_id: str, function: Payload, args: Payload,
                      workers: list[str] | None = None, wait: bool = True) -> dict[str, list[Any]]:
        """``{address: ["ok", result] | ["error", exception, traceback, text]}``
        from each worker (all, or ``workers``: addresses or names)."""
        addresses = list(self.server.worker_comms) if workers is None else self.server.resolve_workers(workers)
        answers = await self.server.ask_workers("run", addresses, function=function, args=args, wait=wait)
        out: dict[str, list[Any]] = {}
        for address, answer in answers.items():
            if isinstance(answer, WorkerRequestError) and isinstance(answer.payload, Payload):
                out[address] = ["error", answer.payload, dumps(None), str(answer)]
            elif isinstance(answer, BaseException):  # e.g. the worker left meanwhile
                out[address] = ["error", *self.server.state.make_exception(answer)]
            else:
                out[address] = answer
        return out

    # -- restart ----------------------------------------------------------------------

    async def rpc_restart(self, client_id: str, timeout: float | None,
                          wait_for_workers: bool = True) -> None:
        """Forget every task (every client's futures are cancelled, saying
        why), then restart every worker and, with ``wait_for_workers``, wait
        until as many are back (``TimeoutError`` after ``timeout`` s)."""
        server = self.server
        logger.info("restarting the cluster, asked by %s", client_id)
        control_state.release_all(server.state, RESTART_REASON, time.monotonic())
        server._notify("cluster_restarted")
        server._flush()  # clients hear that their futures are cancelled before anything else
        await self._restart(list(server.state.workers), timeout, wait_for_workers, True)

    async def rpc_restart_workers(self, client_id: str, workers: list[Any], timeout: float | None,
                                  raise_for_error: bool = True) -> dict[Any, str]:
        """Restart these workers (addresses or names) and wait until as many
        are back: ``{worker as given: "OK" | "timed out"}``.  Their tasks are
        rescheduled, their results recomputed, as when a worker dies."""
        state = self.server.state
        addresses = self.server.resolve_workers(workers)
        alone = [a for a in addresses if not state.workers[a].supervised]
        if alone:
            raise ValueError(f"Restarting workers requires a nanny to be used: workers {alone} "
                             "have no supervisor (started with `shoal worker --no-nanny`?)")
        out = await self._restart(list(dict.fromkeys(addresses)), timeout, True, raise_for_error)
        return {w: out[a] for w, a in zip(workers, addresses)}

    async def restart_supervised(self, timeout: float | None = None) -> list[str]:
        """Restart every worker a supervisor watches and wait until as many
        are back (for nanny plugins registered with ``restart``); the
        addresses of the workers that have none, left running."""
        state = self.server.state
        supervised = [a for a, w in state.workers.items() if w.supervised]
        if supervised:
            await self._restart(supervised, timeout, True, True)
        return [a for a, w in state.workers.items() if not w.supervised]

    async def _restart(self, addresses: list[str], timeout: float | None, wait: bool,
                       raise_errors: bool) -> dict[str, str]:
        server = self.server
        state = server.state
        deadline = None if timeout is None else server.loop.time() + timeout
        n_before = len(state.workers)
        records = {a: state.workers[a] for a in addresses}
        supervised = [a for a in addresses if records[a].supervised]
        out = {a: "removed" for a in addresses if a not in supervised}
        for address in out:
            logger.warning("worker %s has no supervisor: closing it instead of restarting it", address)
            self._remove_worker(address, "restart asked, but no supervisor would start it again")
        await server.ask_workers("restart", supervised, timeout=timeout, reason="client.restart")
        # gone: a new worker may come back at the same address (a fixed port)
        await self._until(lambda: not any(state.workers.get(a) is records[a] for a in supervised),
                          deadline)
        stuck = [a for a in supervised if state.workers.get(a) is records[a]]
        for address in supervised:
            out[address] = "timed out" if address in stuck else "OK"
        for address in stuck:  # so that every worker after a restart is a new one
            self._remove_worker(address, "did not restart in time", close=False)
        if stuck and raise_errors:
            raise TimeoutError(f"{len(stuck)}/{len(supervised)} worker(s) did not shut down within "
                               f"{timeout} s: {stuck}")
        if not wait:
            return out
        if await self._until(lambda: len(state.running_workers()) >= n_before, deadline):
            return out
        missing = n_before - len(state.running_workers())
        message = (f"Waited for {len(addresses)} worker(s) to reconnect after restarting but, "
                   f"after {timeout} s, {missing} have not returned. Consider a longer timeout, "
                   "or `wait_for_workers=False`.")
        if len(out) > len(supervised):
            message += (" Workers without a supervisor were closed instead of restarted; "
                        "they do not come back unless something else starts them.")
        if raise_errors:
            raise TimeoutError(message)
        back = {str(w.name) for w in state.workers.values()}
        for address in supervised:
            if str(records[address].name) not in back:
                out[address] = "timed out"
        return out

    def _remove_worker(self, address: str, reason: str, close: bool = True) -> None:
        """Take the worker out of the cluster now: its running tasks go
        elsewhere, its connection is closed (after a ``CloseWorker`` with
        ``close``).  A shoal worker whose connection closes shuts down."""
        server = self.server
        comm = server.worker_comms.get(address)
        if comm is not None and close:
            try:
                comm.send([m.CloseWorker(reason)])
            except OSError:
                pass
        server.state.remove_worker(address, time.monotonic(), reason)
        server._on_worker_closed(address, None)  # forgets its connection, tells the extensions
        if comm is not None:
            server._spawn(comm.close())

    # -- retire_workers ---------------------------------------------------------------

    async def rpc_retire_workers(self, client_id: str, workers: list[str] | None = None,
                                 names: list[Any] | None = None, close_workers: bool = False,
                                 remove: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Retire workers gracefully: ``{address: worker info}`` of those
        retired.  A worker holding results that cannot go anywhere (no other
        running worker) or an actor stays, and is left out of the answer."""
        state = self.server.state
        chosen = self._choose_retiring(workers, names, kwargs)
        if not chosen:
            return {}
        async with self._moving:
            retiring = [w for w in chosen if state.workers.get(w.address) is w]
            now = time.monotonic()
            for w in retiring:
                control_state.set_retiring(state, w.address, True, now)
            self.server._schedule_flush()
            kept = await self._evacuate(retiring)
            now = time.monotonic()
            for w in kept:
                if state.workers.get(w.address) is w:
                    control_state.set_retiring(state, w.address, False, now)
            retired = [w for w in retiring if w not in kept]
            # no wait from the last check of unique data to here: nothing new lands on them
            info = {w.address: worker_info(w) for w in retired}
            for w in retired:
                if state.workers.get(w.address) is not w:
                    continue  # gone meanwhile
                if remove:
                    self._remove_worker(w.address, "retired", close=close_workers)
                elif close_workers:
                    self._close_later(w.address)
            self.server._schedule_flush()
        logger.info("retired workers %s%s", sorted(info),
                    f"; could not retire {sorted(w.address for w in kept)}" if kept else "")
        return info

    def _choose_retiring(self, workers: list[str] | None, names: list[Any] | None,
                         kwargs: dict[str, Any]) -> list[WorkerRecord]:
        state = self.server.state
        if names is not None and workers is not None:
            raise TypeError("names and workers are mutually exclusive")
        unknown = set(kwargs) - _CLOSE_CHOICE
        if unknown:
            raise TypeError(f"retire_workers() got unexpected keyword arguments {sorted(unknown)}")
        if (names is not None or workers is not None) and kwargs:
            raise TypeError("Parameters for workers_to_close() are mutually exclusive with names "
                            f"and workers: {kwargs}")
        if names is not None:
            wanted = {str(n) for n in names}
            return [w for w in state.workers.values() if str(w.name) in wanted]
        if workers is not None:  # as dask: addresses no longer in the cluster are skipped
            return [state.workers[a] for a in dict.fromkeys(workers) if a in state.workers]
        if kwargs.get("key") is not None:
            raise NotImplementedError(
                "retire_workers(key=...): the grouping function would have to run on the "
                "scheduler, which never runs user code; choose the workers with workers= or names=")
        if kwargs.get("attribute", "address") != "address":
            raise ValueError("retire_workers(attribute=...) only makes sense as 'address'")
        return replicas.workers_to_close(
            list(state.workers.values()), kwargs.get("n"), kwargs.get("target"),
            kwargs.get("minimum"), kwargs.get("memory_ratio"))

    async def _evacuate(self, retiring: list[WorkerRecord]) -> list[WorkerRecord]:
        """Copy every result only retiring workers hold onto running workers;
        return the retiring workers that must stay (they hold an actor, or
        results nobody could take)."""
        state = self.server.state
        kept = [w for w in retiring if any(replicas.is_actor(ts) for ts in w.has_what)]
        for w in kept:
            logger.warning("worker %s holds an actor, which cannot move: it is not retired", w.address)
        stalls = 0
        while True:
            leaving = [w for w in retiring if w not in kept and state.workers.get(w.address) is w]
            unique = replicas.unique_data(leaving)
            if not unique:
                return kept
            recipients = state.running_workers()
            if not recipients or stalls >= self.move_attempts:
                stuck = [w for w in leaving if any(w in ts.who_has for ts in unique)]
                logger.warning("workers %s hold results no other worker could take: not retired",
                               [w.address for w in stuck])
                return kept + stuck
            copied = await self._copy(replicas.plan_evacuation(unique, recipients))
            stalls = 0 if copied else stalls + 1

    def _close_later(self, address: str) -> None:
        comm = self.server.worker_comms.get(address)
        if comm is not None:
            try:
                comm.send([m.CloseWorker("retired")])
            except OSError:
                pass

    # -- rebalance, replicate --------------------------------------------------------

    def _running(self, workers: list[str] | None) -> list[WorkerRecord]:
        state = self.server.state
        if workers is None:
            return list(state.running_workers())
        chosen = [state.workers[a] for a in self.server.resolve_workers(workers)]
        return [w for w in dict.fromkeys(chosen) if w.status == "running"]

    def _without_data(self, keys: list[str]) -> list[str]:
        tasks = self.server.state.tasks
        return [k for k in keys if k not in tasks or not tasks[k].who_has]

    async def rpc_rebalance(self, client_id: str, keys: list[str] | None = None,
                            workers: list[str] | None = None) -> dict[str, Any]:
        """Even out the bytes held by the workers (all, or ``workers``) by
        moving results (all, or ``keys``): a copy is made, then the original
        dropped.  ``{"status": "OK"}``, or ``"partial-fail"`` with the keys
        that have no data on any worker."""
        state = self.server.state
        if keys is not None:
            missing = self._without_data(keys)
            if missing:
                return {"status": "partial-fail", "keys": missing}
        async with self._moving:
            tasks = None if keys is None else [state.tasks[k] for k in keys if k in state.tasks]
            moves = replicas.plan_rebalance(self._running(workers), tasks)
            plan: replicas.Copies = {}
            for giver, taker, ts in moves:
                plan.setdefault(taker, {})[ts] = [giver]
            await self._copy(plan)
            originals: dict[str, list[str]] = {}
            for giver, taker, ts in moves:
                if state.tasks.get(ts.key) is ts and taker in ts.who_has:
                    originals.setdefault(giver.address, []).append(ts.key)
            now = time.monotonic()
            for address, moved in originals.items():
                control_state.drop_replicas(state, address, moved, now)
            self.server._schedule_flush()
        return {"status": "OK"}

    async def rpc_replicate(self, client_id: str, keys: list[str], n: int | None = None,
                            workers: list[str] | None = None, branching_factor: int = 2) -> None:
        """Hold each of ``keys`` on ``n`` workers (all, or ``workers``; all of
        them when ``n`` is None): copies are added in a tree
        (``branching_factor`` new copies per existing copy and round), extra
        copies among those workers dropped."""
        if branching_factor < 1:
            raise ValueError(f"branching_factor must be at least 1, got {branching_factor}")
        missing = self._without_data(keys)
        if missing:
            raise KeyError(f"Could not replicate keys whose data is on no worker: {missing}")
        state = self.server.state
        async with self._moving:
            chosen = self._running(workers)
            n = len(chosen) if n is None else min(n, len(chosen))
            if n < 1:
                raise ValueError("Can not use replicate to delete data")
            tasks = [state.tasks[k] for k in dict.fromkeys(keys)]
            now = time.monotonic()
            for w, extra in replicas.plan_trim(tasks, chosen, n).items():
                control_state.drop_replicas(state, w.address, [ts.key for ts in extra], now)
            self.server._schedule_flush()
            stalls = 0
            while stalls < self.move_attempts:
                tasks = [ts for ts in tasks if state.tasks.get(ts.key) is ts]
                alive = [w for w in chosen if state.workers.get(w.address) is w and w.status == "running"]
                plan = replicas.plan_copies(tasks, alive, n, branching_factor)
                if not plan:
                    return
                stalls = 0 if await self._copy(plan) else stalls + 1
            raise SchedulerError(f"replicate made no progress in {self.move_attempts} rounds "
                                 "(the recipients could not fetch the data)")

    async def _copy(self, plan: replicas.Copies) -> int:
        """Carry out ``plan`` (recipients fetch from holders, all at once);
        the number of copies that now exist where the plan wanted them."""
        server = self.server

        async def one(w: WorkerRecord, tasks: dict[Any, list[WorkerRecord]]) -> None:
            try:
                await server.ask_worker(
                    w.address, "gather_copies", self.move_timeout,
                    who_has={ts.key: [h.address for h in holders] for ts, holders in tasks.items()},
                    nbytes={ts.key: ts.nbytes for ts in tasks},
                    types={ts.key: ts.type_name for ts in tasks},
                )
            except (OSError, TimeoutError, SchedulerError) as e:
                logger.warning("worker %s could not fetch %d copies: %s", w.address, len(tasks), e)

        await asyncio.gather(*(one(w, tasks) for w, tasks in plan.items()))
        # each recipient's ReplicasAdded came ahead of its answer: the state knows
        return sum(1 for w, tasks in plan.items() for ts in tasks if w in ts.who_has)
