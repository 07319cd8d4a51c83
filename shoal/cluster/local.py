"""``LocalCluster``: a scheduler and workers on this machine.

With ``processes=True`` (the default) the scheduler and each worker are their
own processes.  The scheduler's listening socket is bound here first and
handed to the scheduler process, so its address is known at once and the
workers start in parallel with it instead of after it.  A supervisor thread
(the nanny's part) restarts workers that die.

With ``processes=False`` everything runs in this process, on the shared
event loop thread (or the caller's, asynchronous), over the in-process
transport (or TCP with ``protocol="tcp"``), with ``shoal.Scheduler`` and
``shoal.Worker`` objects: ``cluster.scheduler`` is the scheduler itself.

The keywords are dask.distributed's (``shoal/cluster/local_options.py``
turns them into what to start); the members users rely on
(``scheduler_info``, ``wait_for_workers``, ``get_client``, ``scale``, the
reprs) are in ``shoal/cluster/manager.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any

from shoal.cluster.local_options import Plan, plan
from shoal.cluster.manager import ClusterManager
from shoal.cluster.prestart import Prestarted, forkserver_enabled
from shoal.cluster.process import Supervisor, spawn, stop_processes
from shoal.comm.addresses import bind_socket

logger = logging.getLogger("shoal.cluster")

_ids = itertools.count(1)


class LocalCluster(ClusterManager):
    """A scheduler and workers on this machine (dask.distributed's keywords).

    name: the cluster's name.  n_workers, threads_per_worker: default as
    dask (about sqrt(cores) worker processes; one worker with every core
    for processes=False).  processes: worker processes under a nanny
    (default), or workers in this process.  host, scheduler_port,
    interface, protocol: where the scheduler listens (default 127.0.0.1,
    any free port).  silence_logs: the log level of the cluster's processes
    (default WARNING; None/False: their defaults).  asynchronous: for use
    with ``await``/``async with``.  scheduler_kwargs, blocked_handlers: for
    the ``Scheduler``; any other keyword (memory_limit, resources,
    local_directory, death_timeout, lifetime, preload...) goes to each
    ``Worker``.  validate: check invariants in every process (slow).
    start_timeout: how long to wait for the workers (setting
    ``local-cluster.start-timeout``).  See docs/usage.md for the keywords
    that mean nothing in shoal.
    """

    def __init__(
        self,
        name: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        loop: Any = None,
        start: Any = None,
        host: str | None = None,
        ip: str | None = None,
        scheduler_port: int = 0,
        silence_logs: Any = logging.WARN,
        dashboard_address: str | None = ":8787",
        worker_dashboard_address: str | None = None,
        services: Any = None,
        worker_services: Any = None,
        service_kwargs: Any = None,
        asynchronous: bool = False,
        security: Any = None,
        protocol: str | None = None,
        blocked_handlers: list[str] | None = None,
        interface: str | None = None,
        worker_class: Any = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        scheduler_sync_interval: float | str = 1,
        *,
        validate: bool = False,
        start_timeout: float | None = None,
        _prestarted: Prestarted | None = None,
        _wait: bool = True,
        **worker_kwargs: Any,
    ) -> None:
        # _prestarted: the socket and fork server ``shoal.Client`` started for
        # us (shoal.cluster.prestart; the client discards it if we raise);
        # _wait=False: return once the processes are asked for, the caller
        # calls _wait_started() when it wants
        self._prestarted: Prestarted | None = None
        self._starting: list[str] = []  # forked workers not yet known to have registered
        from shoal.security import cluster_security

        #: what proves the cluster's processes and clients to each other: the
        #: given Security (True: temporary TLS certificates) with the token
        #: configured, else one generated for this cluster alone
        self.security = cluster_security(security)
        security = self.security
        self._plan: Plan = plan(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
            loop=loop, start=start, host=host, ip=ip, silence_logs=silence_logs,
            worker_dashboard_address=worker_dashboard_address, services=services,
            worker_services=worker_services, service_kwargs=service_kwargs, security=security,
            protocol=protocol, blocked_handlers=blocked_handlers, interface=interface,
            worker_class=worker_class, scheduler_kwargs=scheduler_kwargs, validate=validate,
            worker_kwargs=worker_kwargs,
        )
        from shoal import config
        from shoal.units import parse_timedelta

        #: dask's interval for syncing cluster information to the scheduler;
        #: shoal asks the scheduler when asked, so it is kept, not used
        self.scheduler_sync_interval = parse_timedelta(scheduler_sync_interval)
        self.n_workers = self._plan.n_workers
        self.threads_per_worker = self._plan.threads_per_worker
        self.processes = self._plan.processes
        self.memory_limit = self._plan.memory_limit
        self.host = self._plan.host
        self.scheduler_port = scheduler_port
        self.validate = validate
        self.asynchronous = asynchronous
        self.dashboard_address = dashboard_address
        self.silence_logs = silence_logs
        self.start_timeout = start_timeout or config.duration("local-cluster.start-timeout") or 60.0
        from shoal.cluster.cluster_logs import record_cluster_logs

        record_cluster_logs()  # the supervisor's lines, for get_logs()
        self.name = name or f"LocalCluster-{next(_ids)}"
        self.status = "created"
        self.scheduler_address = ""
        #: where the dashboard is (None: dashboard_address=None); see shoal/dashboard/launch.py
        self.dashboard_link: str | None = None
        self._dashboard: Any = None
        self._scheduler_proc: Any = None
        self._forkserver: Any = None
        self._supervisor: Supervisor | None = None
        self._scheduler: Any = None  # in-process shoal.Scheduler
        self._workers: list[Any] = []  # in-process shoal.Workers
        self._watchers: set[asyncio.Task[None]] = set()  # see _replace_when_restarted
        self._closing = False
        self._runner: Any = None
        self._next_worker = 0
        self._init_manager()
        if _prestarted is not None:
            if (self.processes and not asynchronous and self._plan.protocol in ("tcp", "tls")
                    and _prestarted.matches(self.host, scheduler_port) and forkserver_enabled()):
                self._prestarted = _prestarted
            else:
                _prestarted.discard()
        if not asynchronous:
            try:
                if self.processes:
                    self._start_processes()
                    if _wait:
                        self._wait_started()
                else:
                    self._silence_here()
                    self._runner = self._acquire_runner()
                    self._runner.run_sync(self._start_in_process)
            except BaseException:
                self._close_dashboard()
                raise
            self.status = "running"

    # ------------------------------------------------------------------ start

    def __await__(self) -> Any:
        return self._start_async().__await__()

    async def _start_async(self) -> LocalCluster:
        if self.status == "running":
            return self
        self._loop = asyncio.get_running_loop()
        try:
            if self.processes:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._start_processes)
                await loop.run_in_executor(None, self._wait_started)
            else:
                self._silence_here()
                await self._start_in_process()
        except BaseException:
            self._close_dashboard()
            raise
        self.status = "running"
        return self

    def _start_dashboard(self, scheduler_address: str) -> None:
        """Bind the dashboard's address (served from the first connection on)."""
        if self.dashboard_address is None or self._dashboard is not None:
            return
        from shoal.dashboard.launch import Dashboard

        self._dashboard = Dashboard(self.dashboard_address, scheduler_address, default_host=self.host,
                                    thread=not self.processes, security=self.security)
        self.dashboard_link = self._dashboard.link

    def _close_dashboard(self) -> None:
        dashboard, self._dashboard = self._dashboard, None
        if dashboard is not None:
            dashboard.close()

    def _log_args(self) -> list[str]:
        level = self._plan.log_level
        return ["--log-level", level] if level else []

    def _worker_args(self, name: str) -> list[str]:
        from shoal.deploy.child_args import worker_argv

        options = {"nthreads": self.threads_per_worker, "name": name, "host": self.host,
                   "memory_limit": self.memory_limit, **self._plan.worker_kwargs}
        return [*worker_argv(self.scheduler_address, options), *self._log_args()]

    def _start_processes(self) -> None:
        """Start the scheduler and workers; forked workers are waited for by
        ``_wait_started``, so that the caller can connect meanwhile."""
        from shoal.deploy.child_args import scheduler_argv

        prestarted, self._prestarted = self._prestarted, None
        extra = scheduler_argv(self._plan.scheduler_kwargs)
        if prestarted is not None:
            sock, forkserver = prestarted.take()
        else:
            sock, forkserver = bind_socket(self.host, self.scheduler_port), None
        port = sock.getsockname()[1]
        fd = sock.fileno()
        from shoal.security import remember_cluster, security_env

        protocol = self._plan.protocol
        self.scheduler_address = f"{protocol}://{self.host}:{port}"
        remember_cluster(self.scheduler_address, self.security)
        self._start_dashboard(self.scheduler_address)
        # the cluster serves the dashboard; the scheduler tells clients where it is
        shown = ["--dashboard-link", self.dashboard_link] if self.dashboard_link else []
        # the token and certificates go by environment, never on a command line
        env = security_env(self.security)
        args = ["scheduler", "--host", self.host, "--port", str(port), "--fd", str(fd),
                "--protocol", protocol, "--no-dashboard", *shown, *self._log_args(), *extra]
        try:
            if forkserver is not None or forkserver_enabled():
                from shoal.cluster.zygote import ForkServer

                if forkserver is None:
                    forkserver = ForkServer(pass_fds=(fd,))
                self._forkserver = forkserver
                self._supervisor = Supervisor(
                    spawner=lambda a, ready: forkserver.spawn(a, ready=ready, env=env))
                # scheduler and workers forked back to back: the workers can
                # connect at once, the listening socket is already bound
                scheduler = forkserver.request_spawn(args, inherit=(fd,), env=env)
                forkserver.close_fd(fd)
                names = [self._new_name() for _ in range(self.n_workers)]
                requests = [forkserver.request_spawn(self._worker_args(name), ready=True, env=env)
                            for name in names]
                self._scheduler_proc = forkserver.started(scheduler)
                for name, request in zip(names, requests):
                    self._supervisor.adopt(name, request[1], self.memory_limit, forkserver.started(request))
                self._starting = names
                return
            self._scheduler_proc = spawn(args, pass_fds=(fd,), env=env)
            self._supervisor = Supervisor(env=env)
        finally:
            sock.close()
        self._start_workers(self.n_workers)

    def _wait_started(self) -> None:
        """Until the workers ``_start_processes`` forked have registered."""
        names, self._starting = self._starting, []
        if names:
            self._wait_forked_workers(names)

    def _start_workers(self, n: int) -> list[str]:
        """Start ``n`` worker processes and wait until they registered."""
        assert self._supervisor is not None
        if self._forkserver is not None:
            return self._start_forked_workers(n)
        read_end, write_end = os.pipe()
        names = []
        try:
            for _ in range(n):
                name = self._new_name()
                self._supervisor.add(name, self._worker_args(name), self.memory_limit, write_end)
                names.append(name)
        finally:
            os.close(write_end)
        try:
            _wait_ready(read_end, n, self.start_timeout, self.scheduler_address)
        finally:
            os.close(read_end)
        return names

    def _start_forked_workers(self, n: int) -> list[str]:
        assert self._supervisor is not None
        names = [self._new_name() for _ in range(n)]
        for name in names:
            self._supervisor.add(name, self._worker_args(name), self.memory_limit)
        self._wait_forked_workers(names)
        return names

    def _wait_forked_workers(self, names: list[str]) -> None:
        """Until the forked workers ``names`` registered with the scheduler."""
        assert self._supervisor is not None
        import time

        procs = [self._supervisor.workers[name].proc for name in names]
        deadline = time.monotonic() + self.start_timeout
        for name, proc in zip(names, procs):
            if not proc.wait_ready(max(0.0, deadline - time.monotonic())):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name} exited with code {proc.poll()} while starting "
                                       "(see its log above)")
                raise TimeoutError(f"worker {name} did not join the scheduler at "
                                   f"{self.scheduler_address} within {self.start_timeout} s")

    async def _start_in_process(self) -> None:
        from shoal.deploy.scheduler import Scheduler

        where: dict[str, Any] = {"protocol": "inproc"} if self._plan.protocol == "inproc" else {
            "host": self.host, "port": self.scheduler_port}
        if self._plan.protocol == "tls":
            where["protocol"] = "tls"
        self._scheduler = Scheduler(**where, security=self.security, **self._plan.scheduler_kwargs)
        await self._scheduler.start()
        self.scheduler_address = self._scheduler.address
        from shoal.security import remember_cluster

        remember_cluster(self.scheduler_address, self.security)
        self._start_dashboard(self.scheduler_address)
        if self.dashboard_link:
            self._scheduler.dashboard_link = self.dashboard_link
            self._scheduler.services["dashboard"] = self._dashboard.port
        for _ in range(self.n_workers):
            await self._add_worker_in_process()

    async def _add_worker_in_process(self, name: str | None = None) -> Any:
        from shoal.deploy.worker import Worker

        name = name or self._new_name()
        where: dict[str, Any] = ({"protocol": "inproc"} if self._plan.protocol == "inproc"
                                 else {"host": self.host})
        w = Worker(self.scheduler_address, nthreads=self.threads_per_worker, name=name,
                   memory_limit=self.memory_limit, supervised=True, security=self.security,
                   **where, **self._plan.worker_kwargs)
        await w.start()
        self._workers.append(w)
        task = asyncio.get_running_loop().create_task(self._replace_when_restarted(w))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return w

    async def _replace_when_restarted(self, w: Any) -> None:
        """The nanny's part in-process: a worker that closes because the
        scheduler asked for a fresh one (``client.restart``) is replaced by a
        new ``Worker`` of the same name (in this same process)."""
        await w.finished()
        if self._closing:
            return
        if w in self._workers:  # retired or closed: no longer one of ours
            self._workers.remove(w)
        if w.restart_requested:
            await self._add_worker_in_process(w.name)

    def _new_name(self) -> str:
        name = str(self._next_worker)
        self._next_worker += 1
        return name

    def new_worker_spec(self) -> dict[str, dict[str, Any]]:
        """The next worker ``scale`` would start, as dask's ``SpecCluster``
        describes one: ``{name: {"cls": Nanny or Worker, "options": {...}}}``."""
        from shoal.deploy.nanny import Nanny
        from shoal.deploy.worker import Worker

        options = {"nthreads": self.threads_per_worker, "memory_limit": self.memory_limit,
                   "host": self.host, **self._plan.worker_kwargs}
        return {str(self._next_worker): {"cls": Nanny if self.processes else Worker,
                                          "options": options}}

    def _silence_here(self) -> None:
        """silence_logs for processes=False: shoal's loggers in this process,
        until the cluster closes."""
        if self._plan.log_level is not None and not hasattr(self, "_old_level"):
            shoal_logger = logging.getLogger("shoal")
            self._old_level = shoal_logger.level
            shoal_logger.setLevel(self._plan.log_level)

    def _unsilence(self) -> None:
        old = self.__dict__.pop("_old_level", None)
        if old is not None:
            logging.getLogger("shoal").setLevel(old)

    # ------------------------------------------------------------------ scale

    def _scale_to(self, n: int) -> None:
        """Run ``n`` workers, starting some (waiting until they joined) or
        retiring the newest (their results copied elsewhere first)."""
        if self.processes:
            leaving = self._process_names()[n:]
            if leaving:
                self._acquire_runner().run_sync(self._retire, leaving)
            self._scale_processes(n)
        else:
            self._acquire_runner().run_sync(self._scale_in_process, n)
        self.n_workers = n

    async def _scale_to_async(self, n: int) -> None:
        if self.processes:
            leaving = self._process_names()[n:]
            if leaving:
                await self._retire(leaving)
            await asyncio.get_running_loop().run_in_executor(None, self._scale_processes, n)
        else:
            await self._scale_in_process(n)
        self.n_workers = n

    def _process_names(self) -> list[str]:
        """The supervised worker processes' names, oldest first."""
        assert self._supervisor is not None
        return sorted(self._supervisor.workers, key=int)

    def _scale_processes(self, n: int) -> None:
        assert self._supervisor is not None
        names = self._process_names()
        if len(names) < n:
            self._start_workers(n - len(names))
        for name in names[n:]:
            self._supervisor.remove(name)

    async def _retire(self, names: list[str]) -> None:
        """Ask the scheduler to retire these workers gracefully: results only
        they hold are copied to others, then they leave.  What cannot be
        retired (the scheduler says why in its log) is stopped all the same
        by the caller."""
        try:
            await self._ask("retire_workers", names=names, close_workers=True, remove=True)
        except Exception as e:  # the scheduler gone or failing: stop them anyway
            logger.warning("could not retire workers %s gracefully: %s", names, e)

    async def _scale_in_process(self, n: int) -> None:
        while len(self._workers) < n:
            await self._add_worker_in_process()
        leaving = self._workers[n:]
        if leaving:
            await self._retire([w.name for w in leaving])
            del self._workers[n:]
            for w in leaving:
                await w.close("scaled down")

    async def scale_down(self, workers: Any) -> None:
        """Stop these workers (names or addresses), as dask's ``SpecCluster``;
        ``Adaptive`` retires them through the scheduler first."""
        wanted = {str(w) for w in ([workers] if isinstance(workers, (str, int)) else workers)}
        if self.processes:
            by_address = {a: str(w.get("name")) for a, w in (await self._refresh_info())["workers"].items()}
            names = {by_address.get(w, w) for w in wanted}
            assert self._supervisor is not None
            stopping = [name for name in names if name in self._supervisor.workers]
            loop = asyncio.get_running_loop()
            for name in stopping:
                await loop.run_in_executor(None, self._supervisor.remove, name)
            self.n_workers = len(self._supervisor.workers)
        else:
            closing = [w for w in self._workers if w.name in wanted or w.address in wanted]
            for w in closing:
                self._workers.remove(w)
                await w.close("scaled down")
            self.n_workers = len(self._workers)

    @property
    def workers(self) -> dict[str, Any]:
        """Worker name -> its process (processes=True) or ``shoal.Worker``."""
        if self.processes:
            sup = self._supervisor
            return {name: wp.proc for name, wp in sup.workers.items()} if sup else {}
        return {w.name: w for w in self._workers}

    @property
    def scheduler(self) -> Any:
        """processes=False: the ``shoal.Scheduler``.  processes=True: a proxy
        with its ``address``, ``id`` and ``workers`` (name, pid, nthreads...
        of each, asked of the scheduler process)."""
        if not self.processes:
            return self._scheduler
        from shoal.cluster.manager import SchedulerProxy

        return SchedulerProxy(self)

    # ------------------------------------------------------------------ close

    def close(self, timeout: float | None = None) -> Any:
        if self.asynchronous:
            return self._close()
        if self.status == "closed":
            return None
        self._end_adaptive_sync()
        self._close_manager_sync()
        self._close_dashboard()
        if self.processes:
            self._close_processes()
        elif self._runner is not None:
            try:
                self._runner.run_sync(self._close_in_process, _timeout=timeout or 30)
            finally:
                self._unsilence()
        self._release_runner()
        self.status = "closed"
        return None

    async def _close(self) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        await self._end_adaptive()
        await self._close_manager()
        await asyncio.get_running_loop().run_in_executor(None, self._close_dashboard)
        if self.processes:
            await asyncio.get_running_loop().run_in_executor(None, self._close_processes)
        else:
            await self._close_in_process()
            self._unsilence()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            asyncio.get_running_loop().call_soon(runner.release)
        self.status = "closed"

    def _close_processes(self) -> None:
        from shoal.security import forget_cluster

        forget_cluster(self.scheduler_address)
        procs = [self._scheduler_proc] if self._scheduler_proc is not None else []
        if self._supervisor is not None:
            procs = self._supervisor.halt() + procs
        stop_processes(procs)
        self._scheduler_proc = None
        if self._forkserver is not None:
            self._forkserver.shutdown()
            self._forkserver = None

    async def _close_in_process(self) -> None:
        from shoal.security import forget_cluster

        forget_cluster(self.scheduler_address)
        self._closing = True
        for task in list(self._watchers):
            task.cancel()
        for w in self._workers:
            await w.close("the cluster is closing")
        self._workers = []
        if self._scheduler is not None:
            await self._scheduler.close()

    def __enter__(self) -> LocalCluster:
        if self.asynchronous:
            raise TypeError("an asynchronous LocalCluster is used with 'async with', not 'with'")
        return self

    def __exit__(self, exc_type: Any = None, exc_value: Any = None, traceback: Any = None) -> None:
        self.close()

    async def __aenter__(self) -> LocalCluster:
        return await self._start_async()

    async def __aexit__(self, exc_type: Any = None, exc_value: Any = None, traceback: Any = None
                        ) -> None:
        await self._close()

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """``{"Cluster": lines, "Scheduler": lines, worker address: lines}``
        (``shoal.cluster.cluster_logs``); ``workers``: True (all), False, or
        addresses.  An asynchronous cluster returns an awaitable."""
        from shoal.cluster.cluster_logs import get_logs

        return get_logs(self, scheduler, workers, cluster_manager=cluster)


def _wait_ready(fd: int, n: int, timeout: float, scheduler: str) -> None:
    """Read one line (the worker's address) per worker from the readiness pipe."""
    import select
    import time

    deadline = time.monotonic() + timeout
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"only {got} of {n} workers joined the scheduler at {scheduler} "
                               f"within {timeout} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:  # every worker exited or closed the pipe: some failed
            raise RuntimeError(f"{n - got} of {n} workers failed to start (see their log above)")
        got += data.count(b"\n")
