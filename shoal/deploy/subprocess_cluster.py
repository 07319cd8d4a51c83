"""``SubprocessCluster``: a scheduler and workers each in a process of its
own started with the command line (``shoal scheduler``, ``shoal worker``),
as dask's ``distributed.deploy.subprocess.SubprocessCluster``: a
``SpecCluster`` whose scheduler and workers are ``SubprocessScheduler`` and
``SubprocessWorker`` processes.

``LocalCluster`` does the same job faster (a fork server, one supervisor
for every worker); this is the plain version dask users may ask for by
name, and the model of clusters whose processes start elsewhere (ssh, a
batch job): each is a command line, and readiness comes back on a pipe
(``--ready-fd``: each worker writes its address once it joined).

Every child is tied to this process by its stdin (``--parent-watch``): it
shuts itself down when this process goes, even by ``kill -9``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from shoal.deploy.spec import ProcessInterface, SpecCluster

logger = logging.getLogger("shoal.deploy")


def _start_timeout() -> float:
    from shoal import config

    return config.duration("local-cluster.start-timeout") or 60.0


class SubprocessScheduler(ProcessInterface):
    """A ``shoal scheduler`` process listening on a socket bound here first
    (so its address is known at once); ``scheduler_kwargs``: ``Scheduler``
    keywords its command line carries (``host``, ``port``, ``idle_timeout``...)."""

    def __init__(self, scheduler_kwargs: dict[str, Any] | None = None) -> None:
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        self.process: Any = None
        super().__init__()

    async def start(self) -> None:
        from shoal.cluster.process import spawn
        from shoal.comm.addresses import bind_socket
        from shoal.deploy.child_args import scheduler_argv

        options = dict(self.scheduler_kwargs)
        host = options.pop("host", None) or "127.0.0.1"
        port = int(options.pop("port", 0) or 0)
        extra = scheduler_argv(options)
        sock = bind_socket(host, port)
        try:
            port = sock.getsockname()[1]
            fd = sock.fileno()
            self.process = spawn(["scheduler", "--host", host, "--port", str(port), "--fd", str(fd),
                                  *extra], pass_fds=(fd,))
        finally:
            sock.close()
        self.address = f"tcp://{host}:{port}"
        await super().start()

    async def close(self) -> None:
        await _stop(self.process)
        await super().close()


class SubprocessWorker(ProcessInterface):
    """A ``shoal worker`` process (under a nanny unless ``worker_class`` is
    ``shoal.Worker``); started once it joined the scheduler."""

    def __init__(self, scheduler: str, worker_class: Any = "shoal.Nanny", name: Any = None,
                 worker_kwargs: dict[str, Any] | None = None) -> None:
        from shoal.deploy.child_args import uses_nanny

        self.scheduler = scheduler
        self.worker_class = worker_class
        self.name = name
        self.nanny = uses_nanny(worker_class)
        self.worker_kwargs = dict(worker_kwargs or {})
        self.process: Any = None
        super().__init__()

    async def start(self) -> None:
        from shoal.cluster.process import spawn
        from shoal.deploy.child_args import worker_command_argv
        from shoal.deploy.nanny import _read_line

        options = {**self.worker_kwargs, "name": self.name}
        args = worker_command_argv(self.scheduler, options, nanny=self.nanny)
        read_end, write_end = os.pipe()
        try:
            self.process = spawn([*args, "--ready-fd", str(write_end)], pass_fds=(write_end,))
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()
        try:
            line = await loop.run_in_executor(None, _read_line, read_end, _start_timeout())
            if not line:
                raise RuntimeError(f"worker {self.name} exited (code {self.process.poll()}) "
                                   f"before joining the scheduler at {self.scheduler}; see its "
                                   "log above")
            self.address = line
        except BaseException:
            await _stop(self.process)
            raise
        finally:
            os.close(read_end)
        await super().start()

    async def close(self) -> None:
        await _stop(self.process)
        await super().close()


async def _stop(process: Any) -> None:
    if process is not None:
        from shoal.cluster.process import stop_processes

        await asyncio.get_running_loop().run_in_executor(None, stop_processes, [process])


def SubprocessCluster(
    host: str | None = None,
    scheduler_port: int = 0,
    scheduler_kwargs: dict[str, Any] | None = None,
    dashboard_address: str | None = ":8787",
    worker_class: str = "shoal.Nanny",
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    worker_kwargs: dict[str, Any] | None = None,
    silence_logs: Any = logging.WARN,
    **kwargs: Any,
) -> SpecCluster:
    """A scheduler and ``n_workers`` workers, each in a process of its own
    (dask's keywords; sizes default as ``LocalCluster``'s).  ``kwargs`` go to
    ``SpecCluster`` (``asynchronous``, ``name``...)."""
    from shoal.cluster.local_options import default_sizes
    from shoal.deploy.sizing import parse_memory_limit

    host = host or "127.0.0.1"
    worker_kwargs = dict(worker_kwargs or {})
    n_workers, threads_per_worker = default_sizes(n_workers, threads_per_worker, True)
    if n_workers and "memory_limit" not in worker_kwargs:
        worker_kwargs["memory_limit"] = parse_memory_limit("auto", threads_per_worker)
    scheduler_options = {"host": host, "port": scheduler_port, "silence_logs": silence_logs,
                         "dashboard": dashboard_address is not None,
                         "dashboard_address": dashboard_address, **(scheduler_kwargs or {})}
    worker_options = {"host": host, "nthreads": threads_per_worker, "silence_logs": silence_logs,
                      **worker_kwargs}
    scheduler = {"cls": SubprocessScheduler, "options": {"scheduler_kwargs": scheduler_options}}
    worker = {"cls": SubprocessWorker,
              "options": {"worker_class": worker_class, "worker_kwargs": worker_options}}
    kwargs.setdefault("name", "SubprocessCluster")
    return SpecCluster(workers={i: worker for i in range(n_workers)}, scheduler=scheduler,
                       worker=worker, silence_logs=silence_logs, **kwargs)
