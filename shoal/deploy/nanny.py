"""``shoal.Nanny``: a worker process, started from Python and watched over.

    async with Scheduler() as s:
        async with Nanny(s.address, nthreads=2) as n:
            print(n.worker_address)   # the worker process's address

As dask's ``Nanny``: the worker runs in a child process (``shoal worker
--no-nanny``) which the nanny restarts if it dies, kills if its memory grows
past ``memory_limit``, and starts again after a lifetime with
``lifetime_restart``.  Unlike dask's, shoal's nanny is not a server: it has
no address or port of its own (it is this process, watching its child
through ``shoal.cluster.process.Supervisor``), so ``nanny.address`` is its
worker's address.  After a restart the new worker listens on a new port
unless ``worker_port`` fixed one: ``worker_address`` is the first worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from typing import Any

from shoal.deploy.keywords import check_protocol, refuse
from shoal.deploy.lifecycle import Startable


class Nanny(Startable):
    """A worker in a child process, restarted if it dies (dask.distributed's
    keywords: those of ``Worker`` go to the worker; ``env`` and ``config``
    set its environment variables and shoal settings)."""

    def __init__(
        self,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        scheduler_file: str | None = None,
        worker_port: int | str | None = 0,
        nthreads: int | None = None,
        local_directory: str | None = None,
        services: Mapping[str, Any] | None = None,
        name: Any = None,
        memory_limit: str | float | None = "auto",
        reconnect: bool = True,
        validate: bool = False,
        quiet: bool = False,
        resources: Mapping[str, float] | str | None = None,
        silence_logs: Any = None,
        death_timeout: float | str | None = None,
        preload: str | list[str] | None = None,
        preload_argv: str | list[str] | None = None,
        preload_nanny: Any = None,
        preload_nanny_argv: Any = None,
        security: Any = None,
        contact_address: str | None = None,
        listen_address: str | None = None,
        worker_class: Any = None,
        env: Mapping[str, str] | None = None,
        interface: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        protocol: str | None = None,
        config: Mapping[str, Any] | None = None,
        **worker_kwargs: Any,
    ) -> None:
        from shoal.deploy.sizing import cpu_count, parse_memory_limit
        from shoal.deploy.worker import scheduler_address_from

        refuse("Nanny", services=services, preload_nanny=preload_nanny,
               preload_nanny_argv=preload_nanny_argv)
        from shoal.security import coerce_security

        #: handed to the worker process in its environment, never on its command line
        self.security = coerce_security(security, "Nanny")
        if worker_class is not None and getattr(worker_class, "__name__", worker_class) not in (
                "Worker", "shoal.Worker", "dask.distributed.Worker", "distributed.Worker"):
            refuse("Nanny", worker_class=worker_class)
        check_protocol(protocol, ("tcp", "tls"))
        if not reconnect:
            raise NotImplementedError("Nanny(reconnect=False): shoal workers never reconnect; "
                                      "one that loses its scheduler closes")
        if scheduler_ip is None and scheduler_file is None:
            raise ValueError("Nanny() needs the scheduler's address or a scheduler_file")
        self.scheduler_addr = ("" if scheduler_ip is None
                               else scheduler_address_from(scheduler_ip, scheduler_port))
        self.scheduler_file = scheduler_file
        self.nthreads = cpu_count() if nthreads is None else nthreads
        self.memory_limit = parse_memory_limit(memory_limit, self.nthreads)
        self.name = name
        self.quiet = quiet
        self.env = dict(env or {})
        self.config = dict(config or {})
        if port not in (None, 0, "0"):
            raise NotImplementedError(f"Nanny(port={port!r}): shoal's nanny listens on no port "
                                      "(worker_port= sets the worker's)")
        options: dict[str, Any] = {
            "nthreads": self.nthreads, "memory_limit": self.memory_limit,
            "local_directory": local_directory, "resources": resources,
            "death_timeout": death_timeout, "preload": preload, "preload_argv": preload_argv,
            "contact_address": contact_address, "listen_address": listen_address,
            "interface": interface, "host": host, "port": worker_port or None,
            "validate": validate or None, "name": name,
            "silence_logs": silence_logs, **worker_kwargs,
        }
        import inspect

        from shoal.deploy.child_args import WORKER_OPTIONS
        from shoal.deploy.worker import Worker

        known = inspect.signature(Worker.__init__).parameters
        unknown = sorted(k for k in worker_kwargs if k not in known or k == "kwargs")
        if unknown:
            raise TypeError(f"Nanny() got unexpected keyword arguments {unknown}")
        objects = sorted(k for k in worker_kwargs if k not in WORKER_OPTIONS)
        if objects:
            raise NotImplementedError(f"Nanny({objects[0]}=...): cannot be passed to a worker "
                                      "process (only what its command line carries)")
        self._options = {k: v for k, v in options.items() if v is not None}
        self.death_timeout = death_timeout
        self.status = "created"
        self.worker_address: str | None = None
        self.pid: int | None = None
        self._supervisor: Any = None

    @property
    def address(self) -> str | None:
        """shoal's nanny has no address of its own: its worker's."""
        return self.worker_address

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Nanny:
        self.status = "starting"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._start_blocking)
        except BaseException:
            self.status = "closed"
            raise
        self.status = "running"
        return self

    def _start_blocking(self) -> None:
        from shoal import config
        from shoal.cluster.process import Supervisor, spawn
        from shoal.deploy.child_args import worker_argv

        if not self.scheduler_addr:
            from shoal.deploy.scheduler_file import read_scheduler_file
            from shoal.units import parse_timedelta

            timeout = None if self.death_timeout is None else parse_timedelta(self.death_timeout)
            assert self.scheduler_file is not None
            self.scheduler_addr = read_scheduler_file(self.scheduler_file, timeout)
        with config.set(self.config) if self.config else contextlib.nullcontext():
            from shoal.cluster.zygote import child_env
            from shoal.security import security_env

            # the settings as of now, for every restart; the Security by environment
            env = {**child_env(), **self.env, **security_env(self.security)}
        read_end, write_end = os.pipe()
        first = [True]

        def spawner(args: list[str], ready: bool) -> Any:
            if first[0]:
                first[0] = False
                return spawn([*args, "--ready-fd", str(write_end)], pass_fds=(write_end,), env=env)
            return spawn(args, env=env)

        sup = self._supervisor = Supervisor(spawner=spawner)
        try:
            wp = sup.add(str(self.name or "worker"), worker_argv(self.scheduler_addr, self._options),
                         self.memory_limit)
            os.close(write_end)
            write_end = -1
            self.pid = wp.proc.pid
            line = _read_line(read_end, self._start_timeout())
            if not line:
                code = wp.proc.poll()
                raise RuntimeError(f"the nanny's worker exited (code {code}) before joining the "
                                   f"scheduler at {self.scheduler_addr}; see its log above")
            self.worker_address = line
        except BaseException:
            sup.stop()
            raise
        finally:
            if write_end >= 0:
                os.close(write_end)
            os.close(read_end)

    def _start_timeout(self) -> float:
        from shoal import config

        return config.duration("local-cluster.start-timeout") or 60.0

    async def finished(self) -> None:
        """Until the nanny closed or its worker left for good (a clean exit:
        the scheduler closed or retired it)."""
        while self.status == "running" and self._supervisor is not None and self._supervisor.workers:
            await asyncio.sleep(0.1)

    async def close(self, timeout: float = 5.0, reason: str = "") -> str:
        if self.status in ("closed", "created"):
            self.status = "closed"
            return "OK"
        self.status = "closing"
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            await asyncio.get_running_loop().run_in_executor(None, sup.stop, timeout)
        self.status = "closed"
        return "OK"

    def __repr__(self) -> str:
        return f"<Nanny of worker {self.worker_address!r}, status: {self.status}>"


def _read_line(fd: int, timeout: float) -> str:
    """One line from a pipe within ``timeout`` seconds ("" at EOF)."""
    import select
    import time

    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the nanny's worker did not join the scheduler within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return ""
        data += chunk
    return data.split(b"\n", 1)[0].decode()
