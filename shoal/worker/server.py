"""The worker process's asyncio shell around ``WorkerState``.

It makes no decisions: it turns messages and completions into calls on the
state machine and carries out what comes back (run a task, fetch from a
peer, store or drop a value, tell the scheduler).

Data flow::

    scheduler --ExecuteTask/FreeKeys--> WorkerState --Execute--> TaskExecutor
    TaskExecutor --results--> WorkerState --TaskFinished--> scheduler
    WorkerState --GatherDep--> ConnectionPool --GetData--> peer worker
    peers and clients --GetData/PutData--> this worker's listener
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import shutil
import socket
import threading
import time
from typing import Any

from shoal.comm.core import Comm, accept_greeting, connect_and_greet, listen
from shoal.comm.pool import ConnectionPool
from shoal.errors import CommClosedError, RemoteProtocolError, SerializationError
from shoal.extensions import add_handlers
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps, dumps_exception, loads
from shoal.worker import context, liveness, shm
from shoal.worker import state as ws
from shoal.worker.control import WorkerControl
from shoal.worker.events import WorkerEvents
from shoal.worker.executor import LazyValue, Skipped, Success, TaskExecutor
from shoal.worker.memory_manager import WorkerMemoryManager
from shoal.worker.observability import WorkerObservability
from shoal.worker.plugins import WorkerPlugins

logger = logging.getLogger("shoal.worker")


class WorkerServer:
    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        listen_address: str | None = None,
        memory_limit: int = 0,
        resources: dict[str, float] | None = None,
        validate: bool = False,
        heartbeat_interval: float | None = None,
        connect_timeout: float | None = None,
        supervised: bool = False,
        contact_address: str | None = None,
        security: Any = None,
        scheduler_sni: str | None = None,
    ) -> None:
        if nthreads < 1:
            raise ValueError(f"nthreads must be at least 1, got {nthreads}")
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = name
        self.host = host
        self.port = port
        # None: tcp:// or tls://, as the scheduler's address, once known (start)
        self._listen_address = listen_address
        #: who may connect, and how this worker proves itself (``shoal.Security``;
        #: None: from the settings, when starting)
        self.security = security
        #: the host name to check the scheduler's TLS certificate against
        self.scheduler_sni = scheduler_sni
        self.memory_limit = memory_limit
        self.resources = dict(resources or {})
        self.validate = validate
        # a supervisor (nanny) starts this worker again when it exits asking so
        self.supervised = supervised
        self.restart_requested = False  # the scheduler asked: exit for a fresh process
        from shoal import config

        self.heartbeat_interval = heartbeat_interval or config.duration("worker.heartbeat-interval") or 1.0
        # a scheduler silent this long is given up (shoal/worker/liveness.py)
        self.scheduler_ttl = config.duration("worker.scheduler-ttl") or 15.0
        self.last_heard = 0.0  # when the scheduler last said anything (monotonic)
        #: set by the nanny's command line: this worker replaces one that died, for this reason
        self.restart_reason = ""
        #: the process's exit code (liveness: LOST_SCHEDULER_EXIT_CODE for the nanny)
        self.exit_code = 0
        self.connect_timeout = connect_timeout
        # the address to tell others, when not the one listened on (NAT, containers)
        self.contact_address = contact_address
        self.address = ""
        # the values held here, spilled to disk past the memory target
        self.memory = WorkerMemoryManager(self, memory_limit)
        self.data = self.memory.data
        self.functions: dict[bytes, Any] = {}
        self.actors: dict[str, Any] = {}
        self.shared: dict[str, shm.SharedRecord] = {}  # values held in shared memory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._outbox: list[Any] = []
        self._flush_scheduled = False
        self._actor_executor: Any = None
        self.status = "created"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._data_comms: set[Comm] = set()
        # client id -> its data connection, for ResultPushed (see _push_result)
        self._subscribers: dict[str, Comm] = {}
        self._closed = asyncio.Event()
        # what the scheduler may ask of this worker: method -> handler
        self.handlers: dict[str, Any] = {}
        self.extensions: list[Any] = []
        self.add_extension(self)
        self.local_directory: str | None = None
        self._owned_directories: list[str] = []  # made here: removed at close
        self.plugins = WorkerPlugins(self)
        self.add_extension(self.plugins)
        self.events = WorkerEvents(self)
        self.observability = WorkerObservability(self)  # task stream, profile, logs...
        self.add_extension(self.observability)
        self.add_extension(WorkerControl(self))

    @property
    def listen_address(self) -> str:
        """Where this worker listens: as given, else on ``host:port`` with the
        scheduler's scheme (tcp://, or tls:// for a TLS scheduler)."""
        if self._listen_address:
            return self._listen_address
        from shoal.comm.addresses import parse_address, unparse_host_port

        scheme = "tcp"
        if self.scheduler_address:
            scheme = parse_address(self.scheduler_address)[0]
        scheme = scheme if scheme in ("tcp", "tls") else "tcp"
        return f"{scheme}://{unparse_host_port(self.host, self.port)}"

    @listen_address.setter
    def listen_address(self, value: str | None) -> None:
        self._listen_address = value

    def add_extension(self, extension: Any) -> None:
        """Answer the scheduler's requests with ``extension``'s
        ``rpc_<method>(**args)`` functions (plain or coroutines)."""
        add_handlers(self.handlers, extension, "worker")
        if extension is not self:
            self.extensions.append(extension)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> WorkerServer:
        from shoal.comm import spin

        spin.configure()
        shm.configure()
        self.loop = asyncio.get_running_loop()
        from shoal.security import Security, token_for_server

        self.security, _ = token_for_server(self.security or Security(), self.listen_address,
                                            "worker")
        self.listener = listen(self.listen_address, self._on_connection, security=self.security,
                               tls_role="worker", roles=frozenset({"client", "peer"}))
        await self.listener.start()
        self.address = self.contact_address or await _reachable_address(
            self.listener.address, self.scheduler_address, self.connect_timeout)
        if not self.name:
            self.name = self.address
        await self._setup()
        from shoal import config

        self.state = ws.WorkerState(
            self.address, self.nthreads, validate=self.validate,
            prefetch_below=config.duration("worker.prefetch.below") or 0.0,
            prefetch_window=config.duration("worker.prefetch.window") or 0.0,
            prefetch_max=int(config.get("worker.prefetch.max")),
            **self.memory.state_options())
        self.executor = TaskExecutor(
            self.nthreads, self.loop, self._on_results, self.functions, self.data, worker=self,
            is_cancelled=self._is_cancelled, push=self._push_result,
        )
        self.pool = ConnectionPool("peer", self.name, self.connect_timeout, security=self.security)
        register = m.RegisterWorker(
            self.address, self.name, self.nthreads, self.memory_limit, self.resources,
            os.getpid(), socket.gethostname(), self.supervised, self.restart_reason,
        )
        try:
            self.scheduler, welcome = await connect_and_greet(
                self.scheduler_address, "worker", self.name, self.connect_timeout, retry=True,
                extra=[register, m.Heartbeat(self._metrics())], security=self.security,
                server_hostname=self.scheduler_sni,
            )
            # before any message from the scheduler is handled: no task runs
            # here before the cluster's plugins are in place
            await self.plugins.setup_at_start(welcome.info.get("plugins") or {})
        except BaseException:
            await self.close()
            raise
        # tasks from the scheduler run on our threads, which need the GIL the
        # loop would poll with; clients' actor calls and data requests do poll
        self.scheduler.keeps_loop_polling = False
        self.last_heard = time.monotonic()
        self.scheduler.start(self._on_scheduler_messages, self._on_scheduler_closed)
        from shoal.security import remember_cluster

        remember_cluster(self.scheduler_address, self.security)  # Client(address) in a task
        self.status = "running"
        self.memory.start()
        context.worker_started(self)
        self._spawn(liveness.heartbeat(self, self.scheduler_ttl))
        logger.info("worker %s (%s) connected to %s", self.address, self.name, self.scheduler_address)
        return self

    async def _setup(self) -> None:
        """Called once listening, before registering with the scheduler
        (a subclass prepares what tasks will need: shoal.deploy.worker)."""

    def _metrics(self) -> dict[str, Any]:
        """What the worker tells the scheduler with each heartbeat (the first
        goes with its registration): ``scheduler_info()["workers"]`` shows it."""
        return {"time": time.time()}

    async def finished(self) -> None:
        await self._closed.wait()

    async def close(self, reason: str = "") -> None:
        from shoal.closing import close_once

        if reason and self.status not in ("closing", "closed"):
            logger.info("worker %s closing: %s", self.address, reason)
        await close_once(self, self._close_everything)

    async def _close_everything(self) -> None:
        self.observability.close()
        context.worker_stopped(self)
        self.listener.stop() if hasattr(self, "listener") else None
        await self.plugins.teardown_all()
        for t in list(self._tasks):
            t.cancel()
        if hasattr(self, "scheduler"):
            await self.scheduler.close()
        for comm in list(self._data_comms):
            comm.abort(None)
        if hasattr(self, "pool"):
            self.pool.close()
        if hasattr(self, "executor"):
            self.executor.shutdown(wait=False)
        if self._actor_executor is not None:
            self._actor_executor.shutdown(wait=False)
        if self._client is not None:
            client, self._client = self._client, None
            await self.loop.run_in_executor(None, client.close)
        self.actors.clear()
        self.memory.close()  # drops the data, spilled files included
        for record in self.shared.values():
            record.close()
        self.shared.clear()
        for directory in self._owned_directories:
            shutil.rmtree(directory, ignore_errors=True)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ scheduler

    def _on_scheduler_messages(self, msgs: list[Any]) -> None:
        self.last_heard = time.monotonic()
        for msg in msgs:
            if type(msg) is m.DefineFunctions:
                for f in msg.functions:
                    self.functions.setdefault(f.id, f.blob)
            elif type(msg) is m.WorkersChanged:
                for address in msg.removed:  # fetches from it fail now, not never
                    self.pool.drop(address, f"worker {address} left the cluster")
        for msg in self.state.handle_scheduler(msgs):
            t = type(msg)
            if t is m.DefineFunctions:
                pass
            elif t is m.CloseWorker:
                self._spawn(self.close(msg.reason or "asked by the scheduler"))
            elif t is m.Request:
                self._spawn(self._answer_scheduler(msg))
            else:
                raise RemoteProtocolError(f"unexpected {t.__name__} from the scheduler")
        self._carry_out()

    def _on_scheduler_closed(self, comm: Comm, exc: BaseException | None) -> None:
        if self.status == "running":
            self._lose_scheduler(f"lost the connection to the scheduler{f': {exc}' if exc else ''}")

    def _lose_scheduler(self, reason: str) -> None:
        """The scheduler is gone or unreachable: what this worker holds is
        stale (see shoal/worker/liveness.py).  Close; a nanny starts a
        fresh worker in its place."""
        from shoal.cluster.process import LOST_SCHEDULER_EXIT_CODE

        if self.status != "running":
            return
        logger.warning("worker %s: %s; leaving", self.address, reason)
        if self.supervised:
            self.exit_code = self.exit_code or LOST_SCHEDULER_EXIT_CODE
        self._spawn(self.close(reason))

    async def _answer_scheduler(self, msg: m.Request) -> None:
        handler = self.handlers.get(msg.method)
        try:
            if handler is None:
                raise ValueError(f"worker {self.address} has no request {msg.method!r}")
            value = handler(**msg.args)
            if inspect.isawaitable(value):
                value = await value
            reply = m.Response(msg.id, True, value)
        except Exception as e:
            try:
                payload: Any = dumps(e)
            except Exception:
                payload = f"{type(e).__name__}: {e}"
            reply = m.Response(msg.id, False, payload)
        self._send_scheduler([reply])

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log an event under ``topic`` (or each of a list of topics) at the
        scheduler, as dask's ``Worker.log_event``; from a task:
        ``get_worker().log_event("topic", {"x": 1})``.  ``msg`` must be
        plain msgpack data (``TypeError`` otherwise)."""
        self.events.log_event(topic, msg)

    def rpc_ping(self) -> str:
        return "pong"

    def _send_scheduler(self, msgs: list[Any]) -> None:
        """Queue messages for the scheduler; they leave together at the end of
        this loop tick (one write for everything that happened meanwhile)."""
        if self.status != "running":
            return
        self._outbox.extend(msgs)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        msgs, self._outbox = self._outbox, []
        events = self.events.take()
        if events:  # ahead of the reports of the tasks that logged them
            msgs = events + msgs
        if msgs and self.status == "running":
            try:
                self.scheduler.send(msgs)
            except CommClosedError:
                pass

    def _slots_changed(self, delta: int, seceded_key: str | None = None) -> None:
        """A task seceded from (+1) or rejoined (-1) the thread pool."""
        self.state.nthreads += delta
        if seceded_key is not None:
            ts = self.state.tasks.get(seceded_key)
            if ts is not None:  # the scheduler stops counting it against our slots
                self.state.to_scheduler.append(m.TaskSeceded(seceded_key, ts.run_id))
        self.state.handle_scheduler([])  # start what the new slot allows
        self._carry_out()

    def get_client(self, timeout: float | str | None = None) -> Any:
        """The client tasks and actors on this worker share (made on first
        use, connecting within ``timeout``)."""
        with self._client_lock:
            if self._client is None or self._client.status != "running":
                from shoal.client.client import Client

                self._client = Client(self.scheduler_address, set_as_default=False,
                                      name=f"worker-{self.name}", security=self.security,
                                      timeout=self.connect_timeout if timeout is None else timeout)
            return self._client

    # ------------------------------------------------------------------ carrying out

    def _carry_out(self) -> None:
        state = self.state
        msgs, instructions = state.take()
        for ins in instructions:
            t = type(ins)
            if t is ws.Execute:
                ts = state.tasks[ins.key]
                assert ts.func is not None and ts.args is not None
                self.executor.submit(ins.key, ts.func, ts.args, ts.actor, ts.push_to)
                if self.plugins.observers:
                    self.plugins.transition(ins.key, "ready", "executing")
            elif t is ws.StoreInline:
                self.data[ins.key] = LazyValue(ins.value)
            elif t is ws.DropData:
                for key in ins.keys:
                    self.data.pop(key, None)
                    self.actors.pop(key, None)
                    self._drop_shared(key)
            elif t is ws.GatherDep:
                self._spawn(self._gather_dep(ins.worker, ins.keys))
        if msgs:
            self._send_scheduler(msgs)
        self.memory.data_added()

    def _memory_paused(self, paused: bool) -> None:
        """The memory monitor says: stop (or resume) starting tasks and
        fetching dependencies; the scheduler hears it and sends no new work."""
        if self.status != "running" or paused == self.state.paused:
            return
        self.state.set_paused(paused)
        self._send_scheduler([m.WorkerStatus("paused" if paused else "running")])
        self._carry_out()

    def _spilled_shared(self, key: str) -> None:
        """``key``'s value, held in shared memory, went to disk: let the
        shared memory go (unless the key holds a new value meanwhile)."""
        if key not in self.data.memory:
            self._drop_shared(key)

    def _is_cancelled(self, key: str) -> bool:
        """Called from a task thread before it starts ``key``."""
        ts = self.state.tasks.get(key)
        return ts is None or ts.state is ws.CANCELLED

    def _on_results(self, results: list[Any]) -> None:
        state = self.state
        for r in results:
            ts = state.tasks.get(r.key)
            if type(r) is Skipped:
                state.execute_skipped(r.key)
                continue
            if type(r) is Success:
                if ts is not None and ts.state is ws.EXECUTING:
                    if ts.actor:
                        # the instance stays here; everyone else gets the handle
                        self.actors[r.key] = r.value
                        assert r.inline is not None
                        self.data[r.key] = LazyValue(r.inline)
                    else:
                        self.data.set(r.key, r.value, r.nbytes)
                        if r.shared is not None:
                            self._drop_shared(r.key)
                            self.shared[r.key] = r.shared
                elif r.shared is not None:
                    r.shared.close()  # cancelled meanwhile: nobody will ask
                state.execute_done(r.key, r.nbytes, r.type_name, r.duration, r.inline)
                if self.plugins.observers:
                    self.plugins.transition(r.key, "executing", "memory")
            else:
                state.execute_failed(r.key, r.exception, r.traceback, r.text, r.duration,
                                     r.reschedule)
                if self.plugins.observers:
                    self.plugins.transition(r.key, "executing",
                                            "rescheduled" if r.reschedule else "error")
        self._carry_out()

    async def _fetch(self, worker: str, keys: list[str]) -> m.DataReply:
        """Ask ``worker`` for ``keys``; values it holds in shared memory on this
        host are mapped here (no copy), the rest come over TCP."""
        reply = await self.pool.request(worker, m.GetData(self.pool.next_id(), keys, shm.host_identity()))
        if not reply.shared:
            return reply  # type: ignore[no-any-return]
        unreachable = []
        for key, desc in reply.shared.items():
            attached = shm.attach(desc)
            if attached is None:
                unreachable.append(key)
                continue
            payload, record = attached
            reply.data[key] = payload
            old = self.shared.pop(key, None)
            if old is not None:
                old.close()
            self.shared[key] = record  # keeps the memory alive; we can share it on
        if unreachable:  # e.g. another pid namespace: the same keys over TCP
            again = await self.pool.request(worker, m.GetData(self.pool.next_id(), unreachable))
            reply.data.update(again.data)
            reply.missing.extend(again.missing)
            reply.errors.update(again.errors)
        return reply  # type: ignore[no-any-return]

    async def _gather_dep(self, worker: str, keys: list[str]) -> None:
        start = time.perf_counter()
        try:
            reply = await self._fetch(worker, keys)
        except (OSError, TimeoutError) as e:
            logger.warning("worker %s: could not fetch %d keys from %s: %s", self.address, len(keys), worker, e)
            if self.status == "running":
                self.state.gather_failed(worker)
                self._carry_out()
            return
        if self.status != "running":
            return
        state = self.state
        for key, message in reply.errors.items():
            exc, tb, text = dumps_exception(SerializationError(f"could not fetch {key!r} from {worker}: {message}"))
            state.dependency_unusable(key, exc, tb, text)
        received = {}
        for key, payload in reply.data.items():
            if state.wants_data(key):
                self.data[key] = LazyValue(payload)
                received[key] = state.tasks[key].nbytes or payload.nbytes
            else:
                self._drop_shared(key)
        self.observability.record_transfer(worker, list(received), start, time.perf_counter(),
                                           sum(received.values()))
        state.gather_done(worker, received, reply.missing)
        self._carry_out()

    # ------------------------------------------------------------------ data plane

    def _on_connection(self, comm: Comm) -> None:
        if self.status in ("closing", "closed"):
            comm.abort(None)
            return
        self._spawn(self._greet(comm))

    async def _greet(self, comm: Comm) -> None:
        try:
            await accept_greeting(comm)
        except Exception as e:
            logger.warning("worker %s: rejected a connection from %s: %s", self.address, comm.peer_address, e)
            comm.abort(e)
            return
        try:
            comm.send([m.Welcome(m.PROTOCOL_VERSION, self.address, {"shm_host": shm.host_identity()})])
        except CommClosedError:
            return  # what came with its Hello was garbage: closed with a log line
        self._data_comms.add(comm)
        comm.start(lambda msgs: self._on_data_messages(comm, msgs), self._on_data_closed)

    def _on_data_closed(self, comm: Comm, exc: BaseException | None) -> None:
        self._data_comms.discard(comm)
        for client in [c for c, sub in self._subscribers.items() if sub is comm]:
            del self._subscribers[client]

    def _push_result(self, client: str, result: Success) -> None:
        """From a task thread: send a small result to the client waiting for
        it, on that client's data connection, if it subscribed and the
        connection can be written from this thread.  Only a shortcut: the
        scheduler still hears of the result and tells the client too."""
        comm = self._subscribers.get(client)
        if comm is None or not comm.threadsafe_send or comm.closed or result.inline is None:
            return
        try:
            comm.send([m.ResultPushed(result.key, result.type_name, result.nbytes, self.address,
                                      result.inline)])
        except CommClosedError:
            pass

    def _on_data_messages(self, comm: Comm, msgs: list[Any]) -> None:
        replies: list[Any] = []
        for msg in msgs:
            t = type(msg)
            if t is m.GetData:
                replies.append(self._get_data(msg))
            elif t is m.PutData:
                replies.append(self._put_data(msg))
            elif t is m.ActorCall:
                self._actor_call(comm, msg)
            elif t is m.SubscribeResults:
                self._subscribers[msg.client] = comm
            elif t is m.Echo:  # client.benchmark_hardware(): straight back
                replies.append(msg)
            else:
                raise RemoteProtocolError(f"a worker does not accept {t.__name__}")
        if replies:
            comm.send(replies)

    def _get_data(self, msg: m.GetData) -> m.DataReply:
        data = {}
        missing = []
        errors = {}
        shared = {}
        same_host = bool(msg.shm_host) and msg.shm_host == shm.host_identity()
        for key in msg.keys:
            record = self.shared.get(key) if same_host else None
            if record is not None and key in self.data.memory:
                shared[key] = record.describe()
                continue
            try:
                # the serialized form when there is one (spilled: read from
                # its file, mapped, without bringing it back to memory)
                value = self.data.payload(key)
            except KeyError:
                missing.append(key)
                continue
            if type(value) is Payload:
                data[key] = value
                continue
            try:
                data[key] = dumps(value)
            except SerializationError as e:
                errors[key] = str(e)
        return m.DataReply(msg.id, data, missing, errors, shared)

    def _actor_call(self, comm: Comm, msg: m.ActorCall) -> None:
        """Run an actor method on the actor thread, which sends the answer
        itself where the comm allows it (else the loop does)."""
        instance = self.actors.get(msg.key)
        if instance is None:
            exc, tb, text = dumps_exception(ValueError(f"no actor {msg.key!r} on worker {self.address}"))
            comm.send([m.ActorReply(msg.id, False, None, exc, tb, text)])
            return
        if self._actor_executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._actor_executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-actor")
        loop = self.loop

        def reply(answer: m.ActorReply) -> None:
            if not comm.closed:
                comm.send([answer])

        def run() -> None:
            # actor methods see this worker as theirs: get_worker(), get_client()
            # and objects made without a client work as in a task
            token = context.in_actor(self)
            try:
                if msg.kind == "getattr":
                    value = getattr(instance, msg.name)
                else:
                    assert msg.args is not None
                    args, kwargs = loads(msg.args)
                    value = getattr(instance, msg.name)(*args, **kwargs)
                if inspect.isawaitable(value):
                    # an async method runs on the loop, in this context (a copy)
                    loop.call_soon_threadsafe(self._spawn, self._await_actor(msg.id, value, reply),
                                              context=contextvars.copy_context())
                    return
                answer = m.ActorReply(msg.id, True, dumps(value))
            except BaseException as e:
                exc, tb, text = dumps_exception(e)
                answer = m.ActorReply(msg.id, False, None, exc, tb, text)
            finally:
                context.left_actor(token)
            if comm.threadsafe_send:
                try:
                    reply(answer)
                except CommClosedError:
                    pass  # the caller is gone
            else:
                loop.call_soon_threadsafe(reply, answer)

        self._actor_executor.submit(run)

    async def _await_actor(self, id: int, awaitable: Any, reply: Any) -> None:
        try:
            answer = m.ActorReply(id, True, dumps(await awaitable))
        except BaseException as e:
            exc, tb, text = dumps_exception(e)
            answer = m.ActorReply(id, False, None, exc, tb, text)
        reply(answer)

    def _drop_shared(self, key: str) -> None:
        record = self.shared.pop(key, None)
        if record is not None:
            record.close()

    def _put_data(self, msg: m.PutData) -> m.PutDataAck:
        payloads = dict(msg.data)
        unreachable = []
        for key, desc in msg.shared.items():
            attached = shm.attach(desc)  # a client on this host: map its memory
            if attached is None:
                unreachable.append(key)
                continue
            payloads[key], record = attached
            self._drop_shared(key)
            self.shared[key] = record
        for key, payload in payloads.items():
            self.data[key] = LazyValue(payload)
        sizes = {k: msg.nbytes.get(k, v.nbytes) for k, v in payloads.items()}
        self.state.data_put(sizes, msg.types)
        self._carry_out()
        return m.PutDataAck(msg.id, unreachable=unreachable)


async def _reachable_address(listening: str, scheduler: str, timeout: float | None) -> str:
    """The address to tell others: a wildcard listener (0.0.0.0, ::) is
    advertised with the interface this host uses to reach the scheduler.
    No route to the scheduler yet (a partition that has not healed, a
    network still coming up): asked again until the connect timeout, as
    connecting is, rather than settling for the loopback address."""
    from shoal.comm.addresses import parse_address, parse_host_port, unparse_host_port
    from shoal.comm.core import default_connect_timeout

    scheme, loc = parse_address(listening)
    if scheme not in ("tcp", "tls"):
        return listening
    host, port = parse_host_port(loc)
    if host not in ("0.0.0.0", "::", ""):
        return listening
    s_host, s_port = parse_host_port(parse_address(scheduler)[1], 8786)
    family = socket.AF_INET6 if ":" in s_host else socket.AF_INET
    deadline = time.monotonic() + (default_connect_timeout() if timeout is None else timeout)
    while True:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((s_host, s_port))  # UDP: picks a route, sends nothing
                ip = probe.getsockname()[0]
            break
        except OSError:
            if time.monotonic() > deadline:
                ip = socket.gethostbyname(socket.gethostname())
                break
            await asyncio.sleep(0.1)
    return f"{scheme}://{unparse_host_port(ip, port)}"
