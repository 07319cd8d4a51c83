"""The engine of ``shoal.Client`` (the class itself is in ``client.py``).

Two faces, one implementation: every network operation is a coroutine
(``_gather``, ``_scatter``...) run on the client's event loop.  A synchronous
client runs it on the shared loop thread and waits; an asynchronous client
(``asynchronous=True``) hands the coroutine to the caller to ``await``.

Hot paths stay off the loop: ``submit`` and ``map`` pickle in the calling
thread, append to an outgoing list and wake the loop once per batch;
``result()`` of a small value is unpickled in the calling thread from the
copy that came with the "done" notice.

Data flow::

    submit/map --SubmitTasks--> outgoing list --(loop, one send per tick)--> scheduler
    scheduler --TaskDone/TaskErred/...--> _on_messages --> FutureState --> waiters
    gather of large values --GetData--> the workers that hold them (direct)
    scatter --PutData--> workers, then --DataScattered--> scheduler
"""

from __future__ import annotations

import atexit
import contextvars
import threading
import time
import weakref

TYPE_CHECKING = False  # typing is not imported: see load_runtime()
if TYPE_CHECKING:
    import asyncio
    import logging
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any, TypeVar

    from shoal import spans
    from shoal.client import inbox, pushed, releases, transfer, waiting_on
    from shoal.client.future import (
        CANCELLED,
        FINISHED,
        Future,
        FutureState,
    )
    from shoal.client.loop import LoopRunner, get_loop_runner, running_on
    from shoal.comm.core import Comm, connect_and_greet, default_connect_timeout
    from shoal.comm.pool import ConnectionPool
    from shoal.comm.rpc import raise_error_answer
    from shoal.errors import (
        CommClosedError,
        FutureLost,
        SchedulerError,
    )
    from shoal.protocol import messages as m

    logger: logging.Logger
    _C = TypeVar("_C", bound="ClientCore")

_runtime_lock = threading.Lock()
_runtime_loaded = False


def load_runtime() -> None:
    """Import what a running client needs, binding it in this module.

    ``from shoal import Client`` must stay light: ``Client()`` with no address
    launches a local cluster's fork server first (``shoal.cluster.prestart``)
    and only then pays for asyncio, msgspec, cloudpickle and the rest of the
    client (~90 ms), so that the two processes' imports overlap.  Every
    ``Client`` calls this before its ``__init__`` runs; nothing in this module
    uses these names before a client exists."""
    if not _runtime_loaded:
        with _runtime_lock:
            _bind_runtime()


def _bind_runtime() -> None:
    global _runtime_loaded, asyncio, logger, ThreadPoolExecutor, inbox, pushed, releases
    global transfer, spans
    global waiting_on, CANCELLED, FINISHED, Future, FutureState, LoopRunner
    global get_loop_runner, running_on, Comm, connect_and_greet, default_connect_timeout
    global ConnectionPool, CommClosedError, FutureLost, SchedulerError, m
    global raise_error_answer
    if _runtime_loaded:  # another thread did it while we waited for the lock
        return
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from shoal import spans
    from shoal.client import inbox, pushed, releases, transfer, waiting_on
    from shoal.client.future import (
        CANCELLED,
        FINISHED,
        Future,
        FutureState,
    )
    from shoal.client.loop import LoopRunner, get_loop_runner, running_on
    from shoal.comm.core import Comm, connect_and_greet, default_connect_timeout
    from shoal.comm.pool import ConnectionPool
    from shoal.comm.rpc import raise_error_answer
    from shoal.errors import (
        CommClosedError,
        FutureLost,
        SchedulerError,
    )
    from shoal.protocol import messages as m

    logger = logging.getLogger("shoal.client")
    _runtime_loaded = True


_default_client: ClientCore | None = None
#: clients made with set_as_default, oldest first: closing the default makes
#: the newest one still running the default again, as in dask
_default_candidates: list[weakref.ref[ClientCore]] = []
_clients: weakref.WeakSet[ClientCore] = weakref.WeakSet()
_SKIP = object()


def _previous_default(closing: ClientCore) -> ClientCore | None:
    """The newest client made with set_as_default that still runs (not ``closing``)."""
    while _default_candidates:
        c = _default_candidates[-1]()
        if c is not None and c is not closing and c.status == "running":
            return c
        _default_candidates.pop()
    return None


#: the client ``Client.as_current()`` made current in this context, if any
current_client: contextvars.ContextVar[Any] = contextvars.ContextVar("shoal_current_client",
                                                                    default=None)


def default_client(c: Any = None) -> Any:
    """``c`` if given; else the client made current in this context
    (``Client.as_current()``), else the one made most recently with
    ``set_as_default``; ``ValueError`` if there is none."""
    if c is not None:
        return c
    c = current_client.get()
    if c is not None and c.status not in ("closing", "closed"):
        return c
    c = _default_client
    if c is None or c.status in ("closing", "closed"):
        raise ValueError("No clients found. Start a client first: shoal.Client()")
    return c


class ClientCore:
    """The engine of ``shoal.Client`` (``shoal/client/client.py``): the
    connection to the scheduler, the futures' states, submitting, gathering,
    scattering, cancelling.  The other responsibilities of the client live in
    modules of their own, mixed into ``shoal.Client``; this class imports none
    of them."""

    _prestarted: Any = None  # the fork server Client.__init__ launched, if any
    #: what proves this client to the cluster (shoal.Security): as given, else
    #: its cluster's, else from the settings, when connecting
    security: Any = None
    #: the event loop this client's coroutines run on (set once it starts)
    loop: asyncio.AbstractEventLoop | None = None

    def _init_core(
        self,
        address: Any,
        *,
        timeout: float | None,
        set_as_default: bool,
        asynchronous: bool,
        name: str | None,
        heartbeat_interval: float | None,
        connection_limit: int,
        cluster_kwargs: dict[str, Any],
    ) -> None:
        from shoal import config

        self._asynchronous = asynchronous
        self.timeout = default_connect_timeout() if timeout is None else timeout
        self.heartbeat_interval = (config.duration("client.heartbeat-interval") or 5.0
                                   if heartbeat_interval is None else heartbeat_interval)
        self.connection_limit = connection_limit
        self._submit_chunk = int(config.get("client.submit-chunk"))
        self._burst_gap = config.duration("client.burst-gap") or 0.0
        self.name = name or "client"
        self.status = "newly-created"
        self.id = ""
        self.futures: dict[str, FutureState] = {}
        self.refcount: dict[str, int] = {}
        self._lock = threading.RLock()
        self._outgoing: list[Any] = []
        self._flush_pending = False
        # a socket comm's send is thread-safe; the in-process transport's is not
        self._direct_send = False
        self._last_submit = 0.0
        self._functions_sent: set[bytes] = set()
        self._spans_sent: set[str] = set()  # span ids the scheduler was told of
        # scatter(hash=True): content digest <-> key of data this client holds
        self._scattered: dict[str, str] = {}
        self._scattered_digest: dict[str, str] = {}
        # keys this client asked to cancel whose TasksCancelled has not come back
        self._cancelling: dict[str, int] = {}
        # keys released whose ReleaseKeys the scheduler has not answered, and
        # those messages, oldest first (see client/releases.py)
        self._releasing: dict[str, int] = {}
        self._release_msgs: list[Any] = []
        self._workers: list[str] = []
        # workers that push results to us (see client/pushed.py): address ->
        # their data connection, None while subscribing
        self._subscriptions: dict[str, Any] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._pushed = 0  # results that came straight from a worker
        # keys finished by a pushed result whose TaskDone has not come yet:
        # the scheduler does not know they are done (see pushed.scheduler_knows)
        self._unconfirmed: set[str] = set()
        self._confirmed: asyncio.Event | None = None
        self._requests: dict[int, asyncio.Future[Any]] = {}
        self._request_ids = iter(range(1, 1 << 62))
        # reconnecting after the connection broke (shoal/client/reconnect.py)
        self._reconnect_timeout = config.duration("client.reconnect-timeout") or 0.0
        # the last submissions sent: resent after a reconnection, in case the
        # broken connection lost them (the scheduler takes them twice alike)
        from shoal.client.resend import ResendBuffer

        self._resend: ResendBuffer | None = ResendBuffer() if self._reconnect_timeout > 0 else None
        self._reconnecting: asyncio.Future[None] | None = None
        self._scheduler_closing = False  # it said so: no reconnecting
        self._set_as_default = set_as_default
        self._callback_executor: ThreadPoolExecutor | None = None
        self._runner: LoopRunner | None = None
        self.scheduler_comm: Comm | None = None
        self.cluster: Any = None
        self._owns_cluster = False
        # the fork server shoal.Client started before importing the runtime
        prestarted, self._prestarted = self._prestarted, None
        if address is None:
            from shoal.cluster.local import LocalCluster

            # returns before the workers registered: we connect meanwhile
            try:
                self.cluster = LocalCluster(asynchronous=asynchronous, _prestarted=prestarted,
                                            _wait=False, **cluster_kwargs)
            except BaseException:
                if prestarted is not None:
                    prestarted.discard()  # a no-op once the cluster took it
                raise
            self._owns_cluster = True
            self._address: str | None = None
        elif isinstance(address, str):
            if cluster_kwargs:
                raise TypeError(
                    f"unexpected keyword arguments {sorted(cluster_kwargs)} when connecting to "
                    f"an existing scheduler at {address}"
                )
            self._address = address
        elif hasattr(address, "scheduler_address"):
            self.cluster = address
            self._address = None
        else:
            raise TypeError(f"Client() needs an address, a cluster or nothing; got {address!r}")
        _clients.add(self)
        if not asynchronous:
            self._runner = get_loop_runner()
            self.loop = self._runner.acquire()
            try:
                starting = self._runner.start(self._start)
                try:
                    if self._owns_cluster:
                        self.cluster._wait_started()
                except BaseException:
                    starting.cancel()
                    raise
                self._runner.wait(starting, self.timeout + 60)
            except BaseException:
                self._teardown_after_failed_start()
                raise

    def _teardown_after_failed_start(self) -> None:
        if self._owns_cluster and self.cluster is not None:
            try:
                self.cluster.close()
            except Exception:
                pass
        if self._runner is not None:
            self._runner.release()
            self._runner = None
        self.status = "closed"

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> ClientCore:
        from shoal.comm import spin
        from shoal.worker import shm

        spin.configure()
        shm.configure()
        self.loop = asyncio.get_running_loop()
        if self._owns_cluster and self.asynchronous:
            await self.cluster
        address = self._address or self.cluster.scheduler_address
        self.scheduler_address = address
        from shoal.security import security_for_client

        self.security = security = security_for_client(self, address)
        comm, welcome = await connect_and_greet(address, "client", self.name, self.timeout, retry=True,
                                                security=security)
        self.scheduler_comm = comm
        self._direct_send = comm.threadsafe_send
        self.id = welcome.id
        self._workers = list(welcome.info.get("workers", []))
        self._dashboard_link = welcome.info.get("dashboard_link")  # the scheduler's, if it has one
        self.pool = ConnectionPool("client", self.id, self.timeout, limit=self.connection_limit,
                                   security=security)
        self.status = "running"
        comm.start(self._on_messages, self._on_closed)
        self._spawn(self._heartbeat())
        if self._owns_cluster and self.cluster.n_workers:
            # a cluster we started is ready when its workers are
            await self._request("wait_for_workers", n=self.cluster.n_workers, timeout=self.timeout + 30)
        if self._set_as_default:
            global _default_client
            _default_client = self
            _default_candidates.append(weakref.ref(self))
            self._set_dask_scheduler()
        with self._lock:
            if self._outgoing and not self._flush_pending:
                self._flush_pending = True
                self.loop.call_soon(self._flush)
        return self

    async def _heartbeat(self) -> None:
        """Tell the scheduler now and then that this client is alive."""
        while self.status == "running":
            await asyncio.sleep(self.heartbeat_interval)
            comm = self.scheduler_comm
            if comm is None or comm.closed:
                return
            try:
                comm.send([m.Heartbeat()])
            except CommClosedError:
                return

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` on the loop as a background task, cancelled at close."""
        assert self.loop is not None
        task = self.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def asynchronous(self) -> bool:
        """Whether this client's methods return awaitables (``asynchronous=True``)."""
        return self._asynchronous

    def __await__(self) -> Any:
        return self._start().__await__()

    async def __aenter__(self: _C) -> _C:
        if self.status != "running":
            await self._start()
        return self

    async def __aexit__(self, exc_type: Any = None, exc_value: Any = None, traceback: Any = None) -> None:
        await self._close()

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, exc_type: Any = None, exc_value: Any = None, traceback: Any = None) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> Any:
        """Close the connection (and the cluster this client started)."""
        if self.asynchronous:
            return self._close()
        if self.status == "closed":
            return None
        try:
            if self._runner is not None and self.loop is not None and not self.loop.is_closed():
                self._runner.run_sync(self._close, _timeout=timeout or 30)
        finally:
            if self._runner is not None:
                runner, self._runner = self._runner, None
                runner.release()
        return None

    async def _close(self) -> None:
        global _default_client
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        self._outgoing.append(m.ClientLeaving())  # no grace period: release my keys now
        self._flush()
        if self.scheduler_comm is not None:
            # what is still unsent matters to a cluster that goes on (a last
            # fire_and_forget); to our own cluster, about to stop, it does not,
            # and a scheduler busy with a large submission may read it slowly
            await self.scheduler_comm.close(timeout=0.0 if self._owns_cluster else None)
        for task in list(self._background):
            task.cancel()
        if hasattr(self, "pool"):
            self.pool.close()
        self._fail_pending("the client was closed")
        if self._owns_cluster and self.cluster is not None:
            await self.cluster._close()
        if self._callback_executor is not None:
            self._callback_executor.shutdown(wait=False)
        if _default_client is self:
            _default_client = _previous_default(self)
        self._restore_dask_scheduler()
        self.status = "closed"

    def shutdown(self) -> Any:
        """Close the scheduler and its workers, then this client."""
        return self._sync(self._shutdown)

    async def _shutdown(self) -> None:
        try:
            await self._request("close")
        except (CommClosedError, OSError, SchedulerError):
            pass
        await self._close()

    def _set_dask_scheduler(self) -> None:
        if not self.asynchronous:
            from shoal.client import dask_scheduler

            dask_scheduler.client_started(self)

    def _restore_dask_scheduler(self) -> None:
        from shoal.client import dask_scheduler

        dask_scheduler.client_closed(self)

    def _on_closed(self, comm: Comm, exc: BaseException | None) -> None:
        if self.status == "running" and comm is self.scheduler_comm:
            from shoal.client import reconnect

            if reconnect.connection_lost(self, exc):
                return
            # a worker's own client loses it whenever the cluster shuts down
            log = logger.info if self.name.startswith("worker-") else logger.warning
            log("lost the connection to the scheduler at %s: %s", self.scheduler_address, exc)
            self._connection_gone(f"lost the connection to the scheduler: {exc}")

    def _connection_gone(self, reason: str) -> None:
        """The scheduler is out of reach for good: the client is closed."""
        if self.status == "running":
            self.status = "closed"
            self._restore_dask_scheduler()
            self._fail_pending(reason)

    def _fail_pending(self, reason: str) -> None:
        """No answer will come any more: requests fail, and pending futures
        are cancelled with ``reason`` (their ``result()`` raises instead of
        waiting forever)."""
        err = CommClosedError(reason)
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(err)
        with self._lock:
            for st in self.futures.values():
                if not st.done():
                    st.status = CANCELLED
                    st.exception = FutureLost(reason)
                    self._wake(st)

    def _in_loop_thread(self) -> bool:
        return running_on(self.loop)

    def _sync(self, coro_fn: Callable[..., Any], *args: Any, asynchronous: bool | None = None,
              callback_timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``coro_fn(*args, **kwargs)`` on the client's loop.

        An asynchronous client (or ``asynchronous=True`` on the loop's own
        thread) gets the coroutine to await.  Otherwise this waits for the
        result, at most ``callback_timeout`` seconds; with
        ``asynchronous=True`` from another thread (a synchronous client, as
        dask allows on every method) the result then comes as an awaitable,
        since a coroutine of the client's loop cannot be awaited elsewhere."""
        if self._asynchronous or (asynchronous and self._in_loop_thread()):
            return coro_fn(*args, **kwargs)
        if self.status not in ("running",):
            raise CommClosedError(f"the client is {self.status}")
        assert self._runner is not None
        result = self._runner.run_sync(coro_fn, *args, _timeout=callback_timeout, **kwargs)
        return Ready(result) if asynchronous else result

    # ------------------------------------------------------------------ messaging

    def _send(self, msg: Any, now: bool = False) -> None:
        """Queue ``msg`` for the scheduler, in order.  With ``now`` (the API's
        own calls, never a garbage collector's ``__del__``), a thread other
        than the loop's writes it to the socket itself, one thread hand-off
        less, unless submissions are coming in a burst: then the event loop
        sends them together (one write, one message for the scheduler)."""
        with self._lock:
            out = self._outgoing
            if type(msg) is m.ReleaseKeys and out and type(out[-1]) is m.ReleaseKeys:
                out[-1].keys.extend(msg.keys)
            else:
                out.append(msg)
                if type(msg) is m.ReleaseKeys:
                    releases.sent(self, msg)
            if self.loop is None or self.status != "running":
                return
            if now and self._direct_send:
                t = time.monotonic()
                burst = t - self._last_submit < self._burst_gap
                self._last_submit = t
                if not burst and not self._in_loop_thread():
                    self._flush_locked()
                    return
            if self._flush_pending:
                return
            self._flush_pending = True
        loop = self.loop
        try:
            if self._in_loop_thread():
                loop.call_soon(self._flush)
            else:
                loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is gone: we are shutting down
            pass

    def _flush(self) -> None:
        with self._lock:
            self._flush_pending = False
            self._flush_locked()

    def _flush_locked(self) -> None:
        """With the lock held (so sends keep their order): write out the queue."""
        msgs, self._outgoing = self._outgoing, []
        comm = self.scheduler_comm
        if not msgs or comm is None or comm.closed:
            if msgs and self._reconnect_timeout > 0 and self.status == "running":
                self._outgoing[:0] = msgs  # they go once reconnected
            return
        try:
            # one wire message per client.submit-chunk tasks: the scheduler decodes a
            # wire message at once, and a big map should not sit decoded there
            batch: list[Any] = []
            ntasks = 0
            for msg in msgs:
                batch.append(msg)
                if type(msg) is m.SubmitTasks:
                    ntasks += len(msg.tasks)
                    if ntasks >= self._submit_chunk:
                        comm.send(batch)
                        batch, ntasks = [], 0
            if batch:
                comm.send(batch)
        except CommClosedError:
            pass
        resend = self._resend
        if resend is not None:
            for msg in msgs:
                resend.sent(msg)

    def _on_messages(self, msgs: list[Any]) -> None:
        inbox.apply(self, msgs)

    def _wake(self, st: FutureState) -> None:
        """With the lock held: tell everyone waiting on ``st``."""
        waiters, st.waiters = st.waiters, None
        if waiters:
            for w in waiters:
                w.state_done(st)

    async def _request(self, method: str, _timeout: float | None = None, **args: Any) -> Any:
        """Ask the scheduler; ``args`` go to it (a ``timeout`` among them is its
        own), ``_timeout`` bounds our wait for the answer."""
        if self._reconnecting is not None:
            from shoal.client import reconnect

            await reconnect.wait_reconnected(self)
        if self.scheduler_comm is None or self.scheduler_comm.closed:
            raise CommClosedError("not connected to the scheduler")
        if self._unconfirmed:
            await pushed.scheduler_knows(self)
        rid = next(self._request_ids)
        assert self.loop is not None
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._requests[rid] = fut
        with self._lock:  # after what was submitted before; lock order: client, then comm
            self._flush_locked()
            self.scheduler_comm.send([m.Request(rid, method, args)])
        try:
            reply = await asyncio.wait_for(fut, _timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the scheduler did not answer {method!r} within {_timeout} s") from None
        finally:
            self._requests.pop(rid, None)
        if reply.ok:
            return reply.value
        raise_error_answer(method, reply.value)

    # ------------------------------------------------------------------ references

    def _acquire_key(self, key: str, inform: bool) -> FutureState:
        with self._lock:
            n = self.refcount.get(key, 0)
            self.refcount[key] = n + 1
            st = self.futures.get(key)
            if st is None:
                st = self.futures[key] = FutureState(key)
                if inform:
                    self._send(m.WantKeys([key]))
            return st

    def _release_key(self, key: str) -> None:
        with self._lock:
            n = self.refcount.get(key, 0) - 1
            if n > 0:
                self.refcount[key] = n
                return
            self.refcount.pop(key, None)
            self.futures.pop(key, None)
            if self._unconfirmed:
                pushed.confirm(self, key, on_loop=False)
            digest = self._scattered_digest.pop(key, None)
            if digest is not None:
                self._scattered.pop(digest, None)
            if self._resend is not None and self._resend.heavy:
                self._resend.released(key)  # its large arguments are the user's to free
            if self.status == "running" or self.status == "newly-created":
                releases.released(self, key)
                self._send(m.ReleaseKeys([key]))

    def _check_open(self) -> None:
        if self.status in ("closing", "closed"):
            raise CommClosedError(f"the client is {self.status}")

    def _submit_specs(self, specs: list[m.TaskSpec], func_id: bytes, blob: bytes,
                      release: list[str] | None = None) -> list[Future[Any]]:
        """Send ``specs`` (skipping keys this client already follows) and return a
        future per spec.  Keys in ``release`` are sent but not kept: they are
        intermediate results the scheduler may drop once their dependents ran."""
        self._check_open()
        with self._lock:
            futures: list[Future[Any]] = []
            made: dict[str, Future[Any]] = {}  # one future per key, as dask's map
            new_specs = []
            keep = set(release or ())
            for spec in specs:
                key = spec.key
                if key in keep:  # no future: nothing here refers to the key
                    st = self.futures.get(key)
                    if st is None or st.status == CANCELLED:
                        new_specs.append(spec)
                    continue
                f = made.get(key)
                if f is None:
                    before = self.futures.get(key)
                    # the reference first: a garbage collection while we look
                    # (a cycle holding the key's last old future) then cannot
                    # release the key under the new future's feet
                    f = made[key] = Future(key, self, inform=False)
                    st = self.futures[key]
                    if st is not before:  # unknown, or its last old future just went
                        new_specs.append(spec)
                    elif st.status == CANCELLED:
                        # a cancelled key asked for again: start over with fresh state
                        st = self.futures[key] = f._state = FutureState(key)
                        new_specs.append(spec)
                futures.append(f)
            if new_specs:
                entered = spans.current()
                if entered is not None:  # shoal.span: the tasks belong to the innermost one
                    self._declare_span(entered)
                    for spec in new_specs:
                        spec.span = entered[1][-1]
                functions = []
                if func_id not in self._functions_sent:
                    self._functions_sent.add(func_id)
                    functions.append(m.FunctionDef(func_id, blob))
                # in chunks: the scheduler decodes one message at a time, so a
                # million-task map never sits decoded in its memory all at once
                chunk = self._submit_chunk
                for i in range(0, len(new_specs), chunk):
                    self._send(m.SubmitTasks(new_specs[i : i + chunk], functions if i == 0 else []),
                               now=True)
                unwanted = [s.key for s in new_specs if s.key in keep]
                if unwanted:
                    self._send(m.ReleaseKeys(unwanted))
        return futures

    def _declare_span(self, entered: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        """With the lock held: tell the scheduler of a span before its first task."""
        names, ids = entered
        if ids[-1] not in self._spans_sent:
            self._spans_sent.add(ids[-1])
            self._send(m.SpanDeclared(list(ids), list(names)))

    # ------------------------------------------------------------------ waiting

    def _wait_states(self, states: list[FutureState], timeout: float | None, count: int | None = None) -> None:
        """Block until ``count`` (default: all) of ``states`` are done."""
        waiting_on.wait_states(self, states, timeout, count)

    async def _wait_states_async(self, states: list[FutureState], timeout: float | None,
                                 count: int | None = None) -> None:
        await waiting_on.wait_states_async(self, states, timeout, count)

    def _add_done_callback(self, future: Future[Any], fn: Callable[[Future[Any]], Any]) -> None:
        waiting_on.add_done_callback(self, future, fn)

    # ------------------------------------------------------------------ results

    def _exception_of(self, st: FutureState) -> BaseException:
        return transfer.exception_of(st)

    def _raise_for(self, st: FutureState) -> None:
        transfer.raise_for(st)

    def _value_of(self, st: FutureState, timeout: float | None = None) -> Any:
        return transfer.value_of(self, st, timeout)

    async def _value_of_async(self, st: FutureState) -> Any:
        return await transfer.value_of_async(self, st)

    def _future_if_finished(self, key: str) -> Future[Any] | None:
        """A new future for ``key`` if this client holds a finished one."""
        with self._lock:
            st = self.futures.get(key)
            if st is None or st.status != FINISHED or not self.refcount.get(key):
                return None
            return Future(key, self, inform=False)

    def gather(self, futures: Any, errors: str = "raise", direct: bool | None = None,
               asynchronous: bool | None = None) -> Any:
        """Wait for the futures inside ``futures`` (a future, or lists, tuples,
        dicts of them, nested) and return the same structure with values."""
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        if hasattr(futures, "__next__"):
            futures = list(futures)
        if self.asynchronous or asynchronous:
            return transfer.gather_async(self, futures, errors)
        return transfer.gather_sync(self, futures, errors)

    def scatter(self, data: Any, workers: Any = None, broadcast: bool = False,
                direct: bool | None = None, hash: bool = True, timeout: float | None = None,
                asynchronous: bool | None = None) -> Any:
        """Put local data on workers; return futures pointing at it."""
        if self.asynchronous or asynchronous:
            return transfer.scatter(self, data, workers, broadcast, hash, timeout)
        return self._sync(transfer.scatter, self, data, workers, broadcast, hash, timeout)

    def _fire_and_forget(self, keys: list[str]) -> None:
        self._send(m.FireAndForget(keys))


class Ready:
    """An awaitable that is done already: what a method called with
    ``asynchronous=True`` on a synchronous client returns (awaiting it in any
    event loop gives the value; never awaiting it is harmless)."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from ()  # a generator: ``await`` runs it and gets the value
        return self.value


def _done_coroutine() -> Ready:
    return Ready(None)


@atexit.register
def _close_clients_at_exit() -> None:
    from shoal import config

    for c in list(_clients):
        if c.status == "running" and not c.asynchronous:
            try:
                c.close(timeout=config.duration("admin.close-at-exit-timeout"))
            except Exception:
                pass
