"""The scheduler process's asyncio shell around ``SchedulerState``.

It accepts connections, says who is who (handshake), feeds each batch to the
state machine and sends what comes out, coalesced per peer per loop tick.  It
makes no scheduling decisions itself.

Requests from clients (``Request(method, args)``) go to *handlers*: the
``rpc_<method>(client_id, **args)`` coroutines of the server's extensions,
one module per responsibility (``queries.py``: who_has, scheduler_info...;
``coordination.py``: queues, variables, events; ``locks.py``: semaphores,
locks, multi-locks; ``cluster_control.py``: run, restart, retire...).  An
extension may also define ``client_joined(client_id)``,
``client_left(client_id)``, ``worker_joined(address)``,
``worker_left(address)`` and ``cluster_restarted()`` (every task was
forgotten: ``client.restart``), called as those happen, and take messages of
its own types (``client_messages``, ``worker_messages``: see
``shoal/extensions.py``).  The server asks workers
things with ``ask_worker``/``ask_workers`` (a ``Request`` on the worker's
connection, answered by a ``Response``).

Data flow::

    client/worker comm --batch--> handle_client/handle_worker --> state
    state.take_messages() --> one send per peer per tick (call_soon flush)
    client Request --> handlers[method] --> Response
    ask_worker --Request--> worker --Response--> the awaiting handler
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import time
import uuid
from typing import Any

from shoal.comm.core import Comm, accept_greeting, listen
from shoal.errors import (
    CommClosedError,
    RemoteProtocolError,
    SchedulerError,
    WorkerRequestError,
    WorkerStartTimeoutError,
)
from shoal.extensions import add_handlers, add_message_handlers
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps, loads
from shoal.scheduler.active_memory import ActiveMemoryManager
from shoal.scheduler.client_sessions import ClientSessions
from shoal.scheduler.cluster_control import ClusterControl
from shoal.scheduler.coordination import Coordination
from shoal.scheduler.dashboard_feed import DashboardFeed
from shoal.scheduler.datasets import Datasets
from shoal.scheduler.events import Events
from shoal.scheduler.liveness import Liveness
from shoal.scheduler.locks import Locks
from shoal.scheduler.observability import SchedulerObservability
from shoal.scheduler.plugins import SchedulerPlugins
from shoal.scheduler.progress import ProgressWatches
from shoal.scheduler.queries import Queries
from shoal.scheduler.scaling_requests import ScalingRequests
from shoal.scheduler.spans import Spans
from shoal.scheduler.state import SchedulerState
from shoal.scheduler.work_stealing import WorkStealing

logger = logging.getLogger("shoal.scheduler")


class SchedulerServer:
    def __init__(
        self,
        address: str = "tcp://127.0.0.1:0",
        *,
        sock: Any = None,
        validate: bool = False,
        worker_timeout: float | None = None,
        check_interval: float | None = None,
        security: Any = None,
    ) -> None:
        from shoal import config
        from shoal.scheduler import placement

        placement.configure(
            bandwidth=config.size("scheduler.bandwidth"),
            target_backlog=config.duration("scheduler.placement.target-backlog") or 0.0,
            max_extra_per_thread=int(config.get("scheduler.placement.max-extra-tasks-per-thread")),
            small_input_bytes=config.size("scheduler.placement.small-input-bytes"),
        )
        self.listen_address = address
        self._sock = sock
        #: who may connect (``shoal.Security``; None: from the settings, when
        #: starting); with the token it generated, if it had to
        self.security = security
        #: the file a generated token was written to
        self.token_file: str | None = None
        self.state = SchedulerState(
            validate=validate,
            allowed_failures=int(config.get("scheduler.allowed-failures")),
            log_size=int(config.get("scheduler.transition-log-length")),
            unknown_duration=config.duration("scheduler.unknown-task-duration") or 0.0,
        )
        # a worker silent for worker_timeout seconds is removed (liveness.py)
        self.worker_timeout = worker_timeout or config.duration("scheduler.worker-ttl") or 15.0
        self.check_interval = check_interval or config.duration("scheduler.worker-check-interval") or 1.0
        self.client_comms: dict[str, Comm] = {}
        self.worker_comms: dict[str, Comm] = {}
        self.address = ""
        self.id = f"scheduler-{uuid.uuid4().hex[:12]}"
        self.status = "created"
        self.started = time.time()
        self._flush_scheduled = False
        self.messages_received = 0  # from clients and workers: the dashboard's rate
        #: services this scheduler offers over HTTP ({"dashboard": port}) and
        #: the dashboard's address, for scheduler_info() and clients
        self.services: dict[str, int] = {}
        self.dashboard_link: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._client_ids = itertools.count(1)
        self._worker_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # requests this scheduler made of workers: id -> (worker, its answer)
        self._worker_requests: dict[int, tuple[str, asyncio.Future[m.Response]]] = {}
        self._worker_request_ids = itertools.count(1)
        self.handlers: dict[str, Any] = {}
        # message types extensions take from clients / workers: type -> handler
        self.client_message_handlers: dict[type, Any] = {}
        self.worker_message_handlers: dict[type, Any] = {}
        self.extensions: list[Any] = []
        self.add_extension(self)
        self.coordination = Coordination(self)
        self.add_extension(self.coordination)
        self.add_extension(Queries(self))
        self.spans = Spans(self)
        self.add_extension(self.spans)
        self.add_extension(Datasets(self))
        self.plugins = SchedulerPlugins(self)
        self.add_extension(self.plugins)
        self.add_extension(ProgressWatches(self))
        self.events = Events(self)
        self.add_extension(self.events)
        self.add_extension(SchedulerObservability(self))
        self.add_extension(Locks(self))
        self.cluster_control = ClusterControl(self)
        self.add_extension(self.cluster_control)
        self.add_extension(WorkStealing(self))
        self.add_extension(ActiveMemoryManager(self))
        self.add_extension(ScalingRequests(self))
        self.liveness = Liveness(self, self.worker_timeout, self.check_interval)
        self.add_extension(self.liveness)
        self.client_sessions = ClientSessions(
            self, config.duration("scheduler.client-grace-period") or 0.0)
        self.add_extension(self.client_sessions)
        self.add_extension(DashboardFeed(self))

    def add_extension(self, extension: Any) -> None:
        """Serve ``extension``'s ``rpc_<method>`` coroutines as requests and
        call its ``client_left``/``worker_joined``/``worker_left``/
        ``cluster_restarted`` hooks."""
        add_handlers(self.handlers, extension, "scheduler")
        add_message_handlers(self.client_message_handlers, extension, "client_messages")
        add_message_handlers(self.worker_message_handlers, extension, "worker_messages")
        if extension is not self:
            self.extensions.append(extension)

    def _notify(self, hook: str, *args: Any) -> None:
        for ext in self.extensions:
            fn = getattr(ext, hook, None)
            if fn is not None:
                try:
                    fn(*args)
                except Exception:
                    logger.exception("scheduler extension %s failed in %s", type(ext).__name__, hook)
    # The reference benchmark and dask users look at ``scheduler.tasks``.
    @property
    def tasks(self) -> dict[str, Any]:
        return self.state.tasks

    @property
    def workers(self) -> dict[str, Any]:
        return self.state.workers

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log an event under ``topic`` (or each of a list of topics), as
        dask's ``Scheduler.log_event``: for code run with ``run_on_scheduler``."""
        self.events.log_event(topic, msg)

    def get_events(self, topic: str | None = None) -> Any:
        """``(time, msg)`` events of ``topic``, or ``{topic: events}`` of all."""
        if topic is None:
            return {k: tuple(v) for k, v in self.events.log.all_events().items()}
        return tuple(self.events.log.events(topic))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> SchedulerServer:
        from shoal.comm import spin

        spin.configure()
        self.loop = asyncio.get_running_loop()
        kwargs = {"sock": self._sock} if self._sock is not None else {}
        from shoal.security import Security, token_for_server

        self.security, generated = token_for_server(self.security or Security(),
                                                    self.listen_address, "scheduler")
        self.listener = listen(self.listen_address, self._on_connection, security=self.security,
                               tls_role="scheduler", roles=frozenset({"client", "worker"}), **kwargs)
        await self.listener.start()
        self.address = self.listener.address
        if generated:
            self._write_generated_token()
        from shoal.security import remember_cluster

        remember_cluster(self.address, self.security)  # a Client(address) made in this process
        self.status = "running"
        self._spawn(self.liveness.run())
        logger.info("scheduler at %s", self.address)
        return self

    def _write_generated_token(self) -> None:
        from shoal.comm.addresses import parse_address, parse_host_port
        from shoal.security import generated_token_path, write_token_file

        port = parse_host_port(parse_address(self.address)[1], 0)[1]
        self.token_file = write_token_file(generated_token_path(port), self.security.token)
        contact = getattr(self, "contact", None)  # shoal.Scheduler's: not 0.0.0.0
        logger.warning(
            "no token was given: the scheduler generated one and wrote it to %s (mode 0600). "
            "Workers and clients need it: shoal worker %s --token-file %s, or SHOAL_TOKEN set "
            "to its contents", self.token_file, contact() if contact else self.address,
            self.token_file)

    def verify_token(self, candidate: Any) -> bool:
        """Whether ``candidate`` is this scheduler's token (constant time);
        True for anything when it runs without one (loopback).  For
        anything else that asks for the token, e.g. the dashboard."""
        return self.security is None or self.security.verify_token(candidate)

    async def finished(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        from shoal.closing import close_once

        await close_once(self, self._close_everything)

    async def _close_everything(self) -> None:
        for ext in self.extensions:
            closing = getattr(ext, "closing", None)
            if closing is not None:
                try:
                    await closing()
                except Exception:
                    logger.exception("scheduler extension %s failed while closing", type(ext).__name__)
        self.listener.stop()
        from shoal.security import forget_cluster

        forget_cluster(self.address)
        # a copy: a send to a worker that is gone closes its comm at once,
        # and the close handler removes it from worker_comms
        for comm in list(self.worker_comms.values()):
            try:
                comm.send([m.CloseWorker("the scheduler is closing")])
            except CommClosedError:
                pass
        comms = list(self.worker_comms.values()) + list(self.client_comms.values())
        await asyncio.gather(*(c.close() for c in comms), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ connections

    def _on_connection(self, comm: Comm) -> None:
        if self.status != "running":
            comm.abort(None)
            return
        self._spawn(self._greet(comm))

    async def _greet(self, comm: Comm) -> None:
        try:
            hello = await accept_greeting(comm)
            if hello.role == "client":
                self._add_client(comm, hello, ClientSessions.resume_request(comm))
            elif hello.role == "worker":
                from shoal import config

                msgs = await comm.recv(config.duration("comm.timeouts.handshake"))
                register = msgs[0] if msgs else None
                if not isinstance(register, m.RegisterWorker):
                    raise RemoteProtocolError("a worker must register first")
                self._add_worker(comm, register, msgs[1:])
            else:
                comm.send([m.Rejected(f"the scheduler does not accept role {hello.role!r}")])
                raise RemoteProtocolError(f"unknown role {hello.role!r}")
        except (RemoteProtocolError, SchedulerError, TimeoutError, OSError) as e:
            logger.warning("rejected a connection from %s: %s", comm.peer_address, e)
            await comm.close()
        except Exception:
            logger.exception("rejected a connection from %s", comm.peer_address)
            await comm.close()

    def _add_client(self, comm: Comm, hello: m.Hello, resume: str | None = None) -> None:
        """A client connected; ``resume``: the id it had before its
        connection broke (client_sessions.py), taken up again if it may."""
        if comm.closed:  # what came with its Hello was garbage (closed, logged)
            raise CommClosedError(f"connection from {comm.peer_address} closed while greeting")
        resumed = resume is not None and self.client_sessions.resume(resume)
        if resumed:
            assert resume is not None
            client_id = resume
        else:
            client_id = f"client-{next(self._client_ids)}-{uuid.uuid4().hex[:8]}"
            self.state.add_client(client_id, time.monotonic())
        self.client_comms[client_id] = comm
        comm.name = client_id
        info = {"scheduler": self.address, "id": self.id, "workers": self._worker_list(),
                "resumed": resumed, "dashboard_link": self.dashboard_link}
        comm.send([m.Welcome(m.PROTOCOL_VERSION, client_id, info)])
        self._notify("client_joined", client_id)
        comm.start(
            lambda msgs: self._on_client_messages(client_id, msgs),
            lambda c, exc: self._on_client_closed(client_id, c),
        )
        self._schedule_flush()

    def _add_worker(self, comm: Comm, register: m.RegisterWorker, rest: list[Any]) -> None:
        if comm.closed:
            raise CommClosedError(f"connection from {comm.peer_address} closed while greeting")
        if register.address in self.state.workers:
            comm.send([m.Rejected(f"a worker at {register.address} is already registered")])
            raise SchedulerError(f"duplicate worker address {register.address}")
        info: dict[str, Any] = {"scheduler": self.address}
        for ext in self.extensions:
            welcome = getattr(ext, "worker_welcome", None)
            if welcome is not None:
                info.update(welcome(register.address))
        comm.send([m.Welcome(m.PROTOCOL_VERSION, register.address, info)])
        self.worker_comms[register.address] = comm
        comm.name = register.address
        self.state.add_worker(register, time.monotonic())
        logger.info("worker %s (%s, %d threads) joined", register.address, register.name, register.nthreads)
        address = register.address
        comm.start(
            lambda msgs: self._on_worker_messages(address, msgs),
            lambda c, exc: self._on_worker_closed(address, exc),
        )
        if rest:
            comm.handle(lambda msgs: self._on_worker_messages(address, msgs), rest)
        self._wake_worker_waiters()
        self._notify("worker_joined", address)
        if register.restarted:
            self.liveness.worker_restarted(register)
        self._schedule_flush()

    def _on_client_closed(self, client_id: str, comm: Comm) -> None:
        if self.client_comms.get(client_id) is not comm:
            return  # an old connection of a client that has reconnected since
        del self.client_comms[client_id]
        self._notify("client_left", client_id)
        if self.client_sessions.client_disconnected(client_id):
            self._forget_client(client_id)
        # else its keys are kept for the grace period (client_sessions.py)

    def _forget_client(self, client_id: str) -> None:
        """Release everything the client wanted."""
        if self.status != "running":
            return  # closing: releasing its keys one by one would only delay the exit
        self.state.remove_client(client_id, time.monotonic())
        self._schedule_flush()

    def _on_worker_closed(self, address: str, exc: BaseException | None) -> None:
        if self.worker_comms.pop(address, None) is None:
            return
        if self.status == "running":
            logger.info("worker %s left%s", address, f": {exc}" if exc else "")
        for worker, fut in list(self._worker_requests.values()):
            if worker == address and not fut.done():
                fut.set_exception(CommClosedError(f"worker {address} left: {exc or 'closed'}"))
        self.state.remove_worker(address, time.monotonic(), str(exc or ""))
        self._notify("worker_left", address)
        self._schedule_flush()

    # ------------------------------------------------------------------ messages

    def _on_client_messages(self, client_id: str, msgs: list[Any]) -> None:
        self.messages_received += len(msgs)
        if self.spans.spans or any(type(msg) is m.SpanDeclared for msg in msgs):
            self.spans.tasks_submitted(client_id, msgs)
        if self.plugins.plugins:
            submitted = {spec.key for msg in msgs if type(msg) is m.SubmitTasks for spec in msg.tasks}
            if submitted:
                self.plugins.tasks_submitted(client_id, submitted)
        for msg in self.state.handle_client(client_id, msgs, time.monotonic()):
            if type(msg) is m.Request:
                self._spawn(self._answer(client_id, msg))
            else:
                handler = self.client_message_handlers.get(type(msg))
                if handler is None:
                    raise RemoteProtocolError(f"a client may not send {type(msg).__name__}")
                handler(client_id, msg)
        self._schedule_flush()

    def _on_worker_messages(self, address: str, msgs: list[Any]) -> None:
        if address not in self.state.workers:
            return  # removed (retired) while its connection closes
        self.messages_received += len(msgs)
        for msg in self.state.handle_worker(address, msgs, time.monotonic()):
            if type(msg) is m.Response:
                waiting = self._worker_requests.pop(msg.id, None)
                if waiting is not None and not waiting[1].done():
                    waiting[1].set_result(msg)
            else:
                handler = self.worker_message_handlers.get(type(msg))
                if handler is None:
                    raise RemoteProtocolError(f"a worker may not send {type(msg).__name__}")
                handler(address, msg)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.plugins.batch_handled()
        self.spans.batch_handled()
        to_workers, to_clients = self.state.take_messages()
        for address, msgs in to_workers.items():
            comm = self.worker_comms.get(address)
            if comm is not None:
                try:
                    comm.send(msgs)
                except CommClosedError:
                    pass
        for client_id, msgs in to_clients.items():
            comm = self.client_comms.get(client_id)
            if comm is not None:
                try:
                    comm.send(msgs)
                except CommClosedError:
                    pass

    # ------------------------------------------------------------------ requests

    async def _answer(self, client_id: str, req: m.Request) -> None:
        handler = self.handlers.get(req.method)
        try:
            if handler is None:
                raise SchedulerError(f"unknown request {req.method!r}")
            value = await handler(client_id, **req.args)
            # a handler may have changed what clients want (keys held or
            # handed over): release what is free, send what is due
            self.state._finish()
            self._schedule_flush()
            reply = m.Response(req.id, True, value)
        except WorkerRequestError as e:
            reply = m.Response(req.id, False, e.payload if e.payload is not None else _error_payload(e))
        except TypeError as e:
            if handler is not None and _is_signature_error(e, handler):
                e = TypeError(f"bad arguments for {req.method!r}: {e}")
            reply = m.Response(req.id, False, _error_payload(e))
        except Exception as e:
            reply = m.Response(req.id, False, _error_payload(e))
        comm = self.client_comms.get(client_id)
        if comm is not None:
            try:
                comm.send([reply])
            except CommClosedError:
                pass

    # ------------------------------------------------------------------ asking workers

    async def ask_worker(self, address: str, method: str, timeout: float | None = None,
                         **args: Any) -> Any:
        """Ask worker ``address`` (a ``Request`` answered by its handler
        ``method``); its answer, or its error raised here."""
        comm = self.worker_comms.get(address)
        if comm is None:
            raise SchedulerError(f"no worker at {address}")
        rid = next(self._worker_request_ids)
        fut: asyncio.Future[m.Response] = self.loop.create_future()
        self._worker_requests[rid] = (address, fut)
        try:
            comm.send([m.Request(rid, method, args)])
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"worker {address} did not answer {method!r} within {timeout} s") from None
        finally:
            self._worker_requests.pop(rid, None)
        if reply.ok:
            return reply.value
        if isinstance(reply.value, Payload):  # not opened here: it goes on to the client
            raise WorkerRequestError(f"worker {address} failed {method!r}", reply.value)
        raise WorkerRequestError(f"worker {address} failed {method!r}: {reply.value}")

    async def ask_workers(self, method: str, workers: list[str] | None = None,
                          timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """``ask_worker`` of each of ``workers`` (default: all) at once:
        ``{address: answer or the exception it raised}``."""
        addresses = list(self.worker_comms) if workers is None else self.resolve_workers(workers)
        answers = await asyncio.gather(
            *(self.ask_worker(a, method, timeout, **args) for a in addresses), return_exceptions=True
        )
        return dict(zip(addresses, answers))

    def resolve_workers(self, workers: list[str]) -> list[str]:
        """Worker addresses for ``workers``, given as addresses or names;
        ``ValueError`` naming any that is neither."""
        by_name = {str(w.name): a for a, w in self.state.workers.items()}
        out = []
        for w in workers:
            if w in self.state.workers:
                out.append(w)
            elif str(w) in by_name:
                out.append(by_name[str(w)])
            else:
                raise ValueError(f"no worker with address or name {w!r}")
        return out

    def _worker_list(self) -> list[str]:
        return list(self.state.workers)

    def _wake_worker_waiters(self) -> None:
        n = len(self.state.running_workers())
        still = []
        for want, fut in self._worker_waiters:
            if n >= want and not fut.done():
                fut.set_result(None)
            elif not fut.done():
                still.append((want, fut))
        self._worker_waiters = still

    async def rpc_barrier(self, client_id: str) -> None:
        """Answered once everything the client sent before it has been
        handled (one connection's messages are handled in order)."""
        return None

    async def rpc_wait_for_workers(self, client_id: str, n: int, timeout: float | None = None) -> int:
        """Answered once ``n`` workers are running (retiring ones do not count)."""
        if len(self.state.running_workers()) < n:
            fut: asyncio.Future[None] = self.loop.create_future()
            self._worker_waiters.append((n, fut))
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                assert timeout is not None
                raise WorkerStartTimeoutError(len(self.state.running_workers()), n, timeout) from None
        return len(self.state.running_workers())

    async def rpc_run_on_scheduler(self, client_id: str, function: Payload, args: Payload) -> Payload:
        """Run user code here, because the user asked for exactly that."""
        func = loads(function)
        a, kw = loads(args)
        try:
            params: Any = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        for name in ("dask_scheduler", "scheduler", "shoal_scheduler"):
            if name in params:
                kw[name] = self
        result = func(*a, **kw)
        if inspect.isawaitable(result):
            result = await result
        return dumps(result)

    async def rpc_cancel_unstarted(self, client_id: str, keys: list[str]) -> list[str]:
        """Cancel the client's keys no worker was given yet (see
        ``SchedulerState.cancel_unstarted``); answer with the ones cancelled."""
        return self.state.cancel_unstarted(client_id, keys, time.monotonic())

    async def rpc_close(self, client_id: str) -> bool:
        self.loop.call_later(0.05, lambda: self._spawn(self.close()))
        return True

    async def rpc_pid(self, client_id: str) -> int:
        return os.getpid()


def _is_signature_error(e: TypeError, handler: Any) -> bool:
    """Whether ``e`` says the handler was called with the wrong arguments
    (a client's mistake), rather than coming from inside it."""
    tb = e.__traceback__
    return tb is not None and tb.tb_next is None


def _error_payload(e: BaseException) -> Any:
    try:
        return dumps(e)
    except Exception:
        return f"{type(e).__name__}: {e}"
