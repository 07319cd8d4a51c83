"""``LocalCluster``: a scheduler and workers on this machine.

With ``processes=True`` (the default) the scheduler and each worker are their
own processes.  The scheduler's listening socket is bound here first and
handed to the scheduler process, so its address is known at once and the
workers start in parallel with it instead of after it.  A supervisor thread
(the nanny's part) restarts workers that die.

With ``processes=False`` everything runs in this process, on the shared
event loop thread, over the in-process transport.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from typing import Any

from shoal.cluster.prestart import Prestarted, forkserver_enabled
from shoal.cluster.process import Supervisor, parse_memory, spawn, stop_processes
from shoal.comm.addresses import bind_socket

logger = logging.getLogger("shoal.cluster")

_ids = itertools.count(1)

#: keyword arguments dask.distributed's LocalCluster takes that mean nothing here
_IGNORED = {"dashboard_address", "silence_logs", "local_directory", "death_timeout", "interface",
            "protocol", "worker_dashboard_address", "scheduler_kwargs", "worker_kwargs",
            "security", "service_kwargs", "diagnostics_port", "blocked_handlers"}


def default_sizes(n_workers: int | None, threads_per_worker: int | None, processes: bool) -> tuple[int, int]:
    cores = os.cpu_count() or 1
    if n_workers is None and threads_per_worker is None:
        if not processes:
            return 1, cores
        if cores <= 4:
            return cores, 1
        n = 2
        while n * n < cores:
            n += 1
        while cores % n:
            n += 1
        return n, cores // n
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cores // max(1, n_workers))
    return n_workers, threads_per_worker


class LocalCluster:
    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        memory_limit: Any = "auto",
        host: str = "127.0.0.1",
        scheduler_port: int = 0,
        asynchronous: bool = False,
        resources: dict[str, float] | None = None,
        validate: bool = False,
        name: str | None = None,
        start_timeout: float | None = None,
        _prestarted: Prestarted | None = None,
        _wait: bool = True,
        **kwargs: Any,
    ) -> None:
        # _prestarted: the socket and fork server ``shoal.Client`` started for
        # us (shoal.cluster.prestart; the client discards it if we raise);
        # _wait=False: return once the processes are asked for, the caller
        # calls _wait_started() when it wants
        self._prestarted: Prestarted | None = None
        self._starting: list[str] = []  # forked workers not yet known to have registered
        unknown = set(kwargs) - _IGNORED
        if unknown:
            raise TypeError(f"LocalCluster got unexpected keyword arguments {sorted(unknown)}")
        self.n_workers, self.threads_per_worker = default_sizes(n_workers, threads_per_worker, processes)
        if self.n_workers < 0 or self.threads_per_worker < 1:
            raise ValueError("n_workers must be >= 0 and threads_per_worker >= 1")
        self.processes = processes
        self.memory_limit = parse_memory(memory_limit, max(1, self.n_workers))
        self.host = host
        self.scheduler_port = scheduler_port
        self.resources = resources
        self.validate = validate
        self.asynchronous = asynchronous
        from shoal import config

        self.start_timeout = start_timeout or config.duration("local-cluster.start-timeout") or 60.0
        from shoal.cluster.cluster_logs import record_cluster_logs

        record_cluster_logs()  # the supervisor's lines, for get_logs()
        self.name = name or f"LocalCluster-{next(_ids)}"
        self.status = "created"
        self.scheduler_address = ""
        self.dashboard_link: str | None = None
        self._scheduler_proc: Any = None
        self._forkserver: Any = None
        self._supervisor: Supervisor | None = None
        self._scheduler: Any = None  # in-process SchedulerServer
        self._workers: list[Any] = []  # in-process WorkerServers
        self._watchers: set[asyncio.Task[None]] = set()  # see _replace_when_restarted
        self._closing = False
        self._runner: Any = None
        self._worker_ids = itertools.count()
        if _prestarted is not None:
            if (processes and not asynchronous and _prestarted.matches(host, scheduler_port)
                    and forkserver_enabled()):
                self._prestarted = _prestarted
            else:
                _prestarted.discard()
        if not asynchronous:
            if processes:
                self._start_processes()
                if _wait:
                    self._wait_started()
            else:
                from shoal.client.loop import get_loop_runner

                self._runner = get_loop_runner()
                self._runner.acquire()
                self._runner.run_sync(self._start_in_process)
            self.status = "running"

    # ------------------------------------------------------------------ start

    def __await__(self) -> Any:
        return self._start_async().__await__()

    async def _start_async(self) -> LocalCluster:
        if self.status == "running":
            return self
        if self.processes:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._start_processes)
            await loop.run_in_executor(None, self._wait_started)
        else:
            await self._start_in_process()
        self.status = "running"
        return self

    def _worker_args(self, name: str) -> list[str]:
        args = ["worker", self.scheduler_address, "--nthreads", str(self.threads_per_worker),
                "--log-level", "WARNING",
                "--name", name, "--host", self.host, "--no-nanny", "--supervised",
                "--memory-limit", str(self.memory_limit)]
        if self.resources:
            args += ["--resources", ",".join(f"{k}={v}" for k, v in self.resources.items())]
        if self.validate:
            args.append("--validate")
        return args

    def _start_processes(self) -> None:
        """Start the scheduler and workers; forked workers are waited for by
        ``_wait_started``, so that the caller can connect meanwhile."""
        prestarted, self._prestarted = self._prestarted, None
        if prestarted is not None:
            sock, forkserver = prestarted.take()
        else:
            sock, forkserver = bind_socket(self.host, self.scheduler_port), None
        port = sock.getsockname()[1]
        fd = sock.fileno()
        self.scheduler_address = f"tcp://{self.host}:{port}"
        args = ["scheduler", "--host", self.host, "--port", str(port), "--fd", str(fd),
                "--log-level", "WARNING"]
        if self.validate:
            args.append("--validate")
        try:
            if forkserver is not None or forkserver_enabled():
                from shoal.cluster.zygote import ForkServer

                if forkserver is None:
                    forkserver = ForkServer(pass_fds=(fd,))
                self._forkserver = forkserver
                self._supervisor = Supervisor(spawner=lambda a, ready: forkserver.spawn(a, ready=ready))
                # scheduler and workers forked back to back: the workers can
                # connect at once, the listening socket is already bound
                scheduler = forkserver.request_spawn(args, inherit=(fd,))
                forkserver.close_fd(fd)
                names = [str(next(self._worker_ids)) for _ in range(self.n_workers)]
                requests = [forkserver.request_spawn(self._worker_args(name), ready=True) for name in names]
                self._scheduler_proc = forkserver.started(scheduler)
                for name, request in zip(names, requests):
                    self._supervisor.adopt(name, request[1], self.memory_limit, forkserver.started(request))
                self._starting = names
                return
            self._scheduler_proc = spawn(args, pass_fds=(fd,))
            self._supervisor = Supervisor()
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
                name = str(next(self._worker_ids))
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
        names = [str(next(self._worker_ids)) for _ in range(n)]
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
        from shoal.scheduler.server import SchedulerServer

        self._scheduler = SchedulerServer(f"inproc://{self.name}-{uuid.uuid4().hex[:8]}",
                                          validate=self.validate)
        await self._scheduler.start()
        self.scheduler_address = self._scheduler.address
        for _ in range(self.n_workers):
            await self._add_worker_in_process()

    async def _add_worker_in_process(self, name: str | None = None) -> Any:
        from shoal.worker.server import WorkerServer

        name = name or str(next(self._worker_ids))
        w = WorkerServer(
            self.scheduler_address, nthreads=self.threads_per_worker, name=name,
            listen_address=f"inproc://{self.name}-worker-{name}-{uuid.uuid4().hex[:8]}",
            memory_limit=self.memory_limit, resources=self.resources, validate=self.validate,
            supervised=True,
        )
        await w.start()
        self._workers.append(w)
        task = asyncio.get_running_loop().create_task(self._replace_when_restarted(w))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return w

    async def _replace_when_restarted(self, w: Any) -> None:
        """The nanny's part in-process: a worker that closes because the
        scheduler asked for a fresh one (``client.restart``) is replaced by a
        new ``WorkerServer`` of the same name (in this same process)."""
        await w.finished()
        if not w.restart_requested or self._closing:
            return
        if w in self._workers:
            self._workers.remove(w)
        await self._add_worker_in_process(w.name)

    # ------------------------------------------------------------------ scale

    def scale(self, n: int) -> None:
        """Run ``n`` workers (starting or stopping some)."""
        if self.processes:
            assert self._supervisor is not None
            names = sorted(self._supervisor.workers, key=int)
            if len(names) < n:
                names += self._start_workers(n - len(names))
            for name in names[n:]:
                self._supervisor.remove(name)
        else:
            assert self._runner is not None
            self._runner.run_sync(self._scale_in_process, n)
        self.n_workers = n

    async def _scale_in_process(self, n: int) -> None:
        while len(self._workers) < n:
            await self._add_worker_in_process()
        while len(self._workers) > n:
            await self._workers.pop().close("scaled down")

    @property
    def workers(self) -> dict[str, Any]:
        if self.processes:
            sup = self._supervisor
            return {name: wp.proc for name, wp in sup.workers.items()} if sup else {}
        return {w.name: w for w in self._workers}

    # ------------------------------------------------------------------ close

    def close(self, timeout: float | None = None) -> Any:
        if self.asynchronous:
            return self._close()
        if self.status == "closed":
            return None
        if self.processes:
            self._close_processes()
        else:
            assert self._runner is not None
            try:
                self._runner.run_sync(self._close_in_process, _timeout=timeout or 30)
            finally:
                self._runner.release()
                self._runner = None
        self.status = "closed"
        return None

    async def _close(self) -> None:
        if self.status == "closed":
            return
        self.status = "closing"
        if self.processes:
            await asyncio.get_running_loop().run_in_executor(None, self._close_processes)
        else:
            await self._close_in_process()
            if self._runner is not None:
                runner, self._runner = self._runner, None
                asyncio.get_running_loop().call_soon(runner.release)
        self.status = "closed"

    def _close_processes(self) -> None:
        procs = [self._scheduler_proc] if self._scheduler_proc is not None else []
        if self._supervisor is not None:
            procs = self._supervisor.halt() + procs
        stop_processes(procs, timeout=5)
        self._scheduler_proc = None
        if self._forkserver is not None:
            self._forkserver.shutdown()
            self._forkserver = None

    async def _close_in_process(self) -> None:
        self._closing = True
        for task in list(self._watchers):
            task.cancel()
        for w in self._workers:
            await w.close("the cluster is closing")
        self._workers = []
        if self._scheduler is not None:
            await self._scheduler.close()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> LocalCluster:
        return await self._start_async()

    async def __aexit__(self, *exc: Any) -> None:
        await self._close()

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """``{"Cluster": lines, "Scheduler": lines, worker address: lines}``
        (``shoal.cluster.cluster_logs``); ``workers``: True (all), False, or
        addresses.  An asynchronous cluster returns an awaitable."""
        from shoal.cluster.cluster_logs import get_logs

        return get_logs(self, scheduler, workers, cluster_manager=cluster)

    def __repr__(self) -> str:
        kind = "processes" if self.processes else "threads"
        return (f"LocalCluster({self.name!r}, {self.scheduler_address!r}, workers={self.n_workers}, "
                f"threads={self.n_workers * self.threads_per_worker}, {kind}, status={self.status})")


def _wait_ready(fd: int, n: int, timeout: float, scheduler: str) -> None:
    """Read one byte per worker from the readiness pipe."""
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
        data = os.read(fd, n - got)
        if not data:  # every worker exited or closed the pipe: some failed
            raise RuntimeError(f"{n - got} of {n} workers failed to start (see their log above)")
        got += len(data)
