"""``shoal.Worker``: a worker started from Python, with dask.distributed's
keywords, as the ``shoal worker`` command starts one.

    async with Scheduler() as s:
        async with Worker(s.address, nthreads=2) as w:
            async with Client(s.address, asynchronous=True) as c:
                assert await c.submit(inc, 1) == 2

It is the worker shell (``WorkerServer``) plus what dask's ``Worker`` adds
around the work itself: a scratch directory of its own
(``local_directory``, removed at close), a lifetime after which it closes
(``lifetime``, ``lifetime_stagger``; with ``lifetime_restart`` it asks its
nanny to start it again), preload modules, the scheduler found in a
scheduler file, and ``await``/``async with`` to start and stop it.

Keywords of dask's ``Worker`` that shoal cannot honour raise
``NotImplementedError`` naming them; the few that mean nothing here (the
dashboard's) are kept as attributes and documented in docs/usage.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shoal.deploy.keywords import check_protocol, checked_plugins, refuse
from shoal.deploy.lifecycle import Startable
from shoal.deploy.preload import Preloads
from shoal.deploy.sizing import cpu_count, interface_address, parse_memory_limit, parse_resources
from shoal.units import parse_timedelta
from shoal.worker.server import WorkerServer

logger = logging.getLogger("shoal.worker")

#: the directory under ``local_directory`` that holds the workers' own ones
SCRATCH = "shoal-scratch-space"


def scratch_root(local_directory: str | None) -> str:
    """Where workers make their directories: ``local_directory`` (default:
    setting ``temporary-directory``, else the system's temporary directory)
    plus ``shoal-scratch-space``."""
    from shoal import config

    base = local_directory or config.get("temporary-directory") or tempfile.gettempdir()
    base = os.path.abspath(os.path.expanduser(str(base)))
    return base if os.path.basename(base) == SCRATCH else os.path.join(base, SCRATCH)


def scheduler_address_from(scheduler_ip: Any, scheduler_port: Any) -> str:
    """dask's ``Worker("host", 8786)`` or ``Worker("tcp://host:8786")``."""
    if not isinstance(scheduler_ip, str) or not scheduler_ip:
        raise TypeError(f"the scheduler address must be a string like 'tcp://host:8786', "
                        f"got {scheduler_ip!r}")
    if scheduler_port is None:
        return scheduler_ip
    return f"{scheduler_ip}:{int(scheduler_port)}"


class Worker(WorkerServer, Startable):
    """A shoal worker, made and run from Python (dask.distributed's keywords).

    scheduler_ip, scheduler_port: the scheduler's address (``"tcp://h:8786"``,
        or host and port); or ``scheduler_file``, a file the scheduler wrote
        (read when the worker starts, waiting up to ``death_timeout``).
    nthreads: threads running tasks (default: every core).
    memory_limit: ``"auto"`` (default: the machine's memory times this
        worker's share of the cores), a size (``"4GB"``), a fraction of the
        machine's memory (``0.5``), or 0/None for none.  Reported to the
        scheduler; a nanny kills a worker process that grows past it.
    resources: ``{"GPU": 2}`` or ``"GPU=2 MEM=10e9"``, for ``submit(resources=)``.
    name: the worker's name (default: its address).
    local_directory: where the worker makes its own directory,
        ``<local_directory>/shoal-scratch-space/worker-XXXX``, available as
        ``worker.local_directory`` (``get_worker().local_directory`` in a
        task) and removed when the worker closes (default: setting
        ``temporary-directory``, else the system's temporary directory).
    death_timeout: seconds to keep trying to reach the scheduler when starting.
    lifetime, lifetime_stagger, lifetime_restart: close after ``lifetime``
        (a duration, plus or minus a random part of ``lifetime_stagger``);
        with ``lifetime_restart`` a worker under a nanny is started again.
        Defaults: settings ``worker.lifetime.*``.
    preload, preload_argv: modules whose ``dask_setup(worker)`` runs before
        the worker joins the scheduler and ``dask_teardown(worker)`` when it
        closes (defaults: settings ``worker.preload``, ``worker.preload-argv``).
    host, port, interface, protocol, listen_address, contact_address: where
        to listen (``interface="eth0"`` listens on that interface's address)
        and the address to tell others, if different.
    heartbeat_interval: between reports to the scheduler (setting
        ``worker.heartbeat-interval``).
    metrics, startup_information: ``{name: f(worker)}`` added to what the
        worker reports (``scheduler_info()["workers"][addr]["metrics"]``).
    silence_logs: a logging level for shoal's loggers in this process.
    nanny: the address of the nanny watching this worker, if any.
    security: a ``shoal.Security``: the cluster's token, TLS certificates
        (default: from the settings).  A worker listening beyond loopback
        needs the token.  ``scheduler_sni``: the host name to check the
        scheduler's TLS certificate against, if not the address's.
    validate: check the state machine's invariants after every step (slow).
    dashboard_address, dashboard, http_prefix: kept as attributes; shoal
        has no worker dashboard yet.
    """

    def __init__(
        self,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        *,
        scheduler_file: str | None = None,
        nthreads: int | None = None,
        local_directory: str | None = None,
        services: Mapping[str, Any] | None = None,
        name: Any = None,
        executor: Any = None,
        resources: Mapping[str, float] | str | None = None,
        silence_logs: int | str | None = None,
        death_timeout: float | str | None = None,
        preload: str | list[str] | None = None,
        preload_argv: str | list[str] | None = None,
        security: Any = None,
        contact_address: str | None = None,
        supervised: bool = False,
        heartbeat_interval: float | str | None = None,
        extensions: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Callable[[Any], Any]] | None = None,
        startup_information: Mapping[str, Callable[[Any], Any]] | None = None,
        interface: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        protocol: str | None = None,
        dashboard_address: str | None = None,
        dashboard: bool = False,
        http_prefix: str = "/",
        nanny: Any = None,
        plugins: Sequence[Any] = (),
        low_level_profiler: bool | None = None,
        validate: bool | None = None,
        profile_cycle_interval: Any = None,
        lifetime: float | str | None = None,
        lifetime_stagger: float | str | None = None,
        lifetime_restart: bool | None = None,
        transition_counter_max: int | bool = False,
        memory_limit: str | float | None = "auto",
        data: Any = None,
        scheduler_sni: str | None = None,
        WorkerStateClass: Any = None,
        listen_address: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"Worker() got unexpected keyword arguments {sorted(kwargs)}")
        refuse("Worker", services=services,
               executor=executor, extensions=extensions, data=data,
               WorkerStateClass=WorkerStateClass, transition_counter_max=transition_counter_max,
               low_level_profiler=low_level_profiler, profile_cycle_interval=profile_cycle_interval)
        check_protocol(protocol)
        from shoal import config

        if scheduler_ip is None and scheduler_file is None:
            raise ValueError("Worker() needs the scheduler's address or a scheduler_file")
        if scheduler_ip is not None and scheduler_file is not None:
            raise ValueError("give the scheduler's address or a scheduler_file, not both")
        address = "" if scheduler_ip is None else scheduler_address_from(scheduler_ip, scheduler_port)
        if nthreads is None:
            nthreads = cpu_count()
        if not isinstance(nthreads, int) or isinstance(nthreads, bool) or nthreads < 1:
            raise ValueError(f"nthreads must be a positive int, got {nthreads!r}")
        if interface is not None:
            if host is not None:
                raise ValueError("give host or interface, not both")
            host = interface_address(interface)
        if listen_address is None and protocol is not None and str(protocol).startswith("inproc"):
            import uuid

            listen_address = f"inproc://worker-{uuid.uuid4().hex[:12]}"
        elif listen_address is None and protocol is not None and str(protocol).startswith("tls"):
            from shoal.comm.addresses import unparse_host_port

            listen_address = f"tls://{unparse_host_port(host or '127.0.0.1', int(port or 0))}"
        from shoal.security import coerce_security

        security = coerce_security(security, "Worker")
        death = None if death_timeout is None else parse_timedelta(death_timeout)
        super().__init__(
            address,
            nthreads=nthreads,
            name="" if name is None else str(name),
            host=host or "127.0.0.1",
            port=int(port or 0),
            listen_address=listen_address,
            memory_limit=parse_memory_limit(memory_limit, nthreads),
            resources=parse_resources(resources),
            validate=bool(validate),
            heartbeat_interval=None if heartbeat_interval is None else parse_timedelta(heartbeat_interval),
            connect_timeout=death,
            contact_address=contact_address,
            supervised=supervised,
            security=security,
            scheduler_sni=scheduler_sni,
        )
        self.scheduler_file = scheduler_file
        self.death_timeout = death
        self.dashboard_address = dashboard_address
        self.dashboard = dashboard
        self.http_prefix = http_prefix
        self.nanny = nanny
        self._extra_metrics = dict(metrics or {})
        self._startup_information = dict(startup_information or {})
        self._startup_values: dict[str, Any] = {}
        if silence_logs not in (None, False):
            logging.getLogger("shoal").setLevel(silence_logs)
        self._scratch_root = scratch_root(local_directory)
        self.lifetime = _lifetime(lifetime, lifetime_stagger, config)
        if lifetime_restart is None:
            lifetime_restart = bool(config.get("worker.lifetime.restart"))
        self.lifetime_restart = bool(lifetime_restart)
        self._lifetime_timer: asyncio.TimerHandle | None = None
        self._graceful: asyncio.Task[None] | None = None
        #: the process exit code ``shoal worker`` ends with (a restart request
        #: for the nanny after a lifetime with ``lifetime_restart``)
        self.exit_code = 0
        self._initial_plugins = checked_plugins(plugins, "WorkerPlugin")
        self.preloads = Preloads(
            self,
            config.get("worker.preload") if preload is None else preload,
            config.get("worker.preload-argv") if preload_argv is None else preload_argv,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Worker:
        if not self.scheduler_address:
            from shoal.deploy.scheduler_file import read_scheduler_file

            assert self.scheduler_file is not None
            loop = asyncio.get_running_loop()
            self.scheduler_address = await loop.run_in_executor(
                None, read_scheduler_file, self.scheduler_file, self.death_timeout)
        await super().start()
        if self.lifetime is not None:
            self._lifetime_timer = self.loop.call_later(self.lifetime, self._lifetime_reached)
        return self

    async def _setup(self) -> None:
        """Listening, not yet registered: make the directory, run the preloads."""
        os.makedirs(self._scratch_root, exist_ok=True)
        self.local_directory = tempfile.mkdtemp(prefix="worker-", dir=self._scratch_root)
        self._owned_directories.append(self.local_directory)  # removed at close
        self._startup_values = {k: _plain(f(self)) for k, f in self._startup_information.items()}
        from shoal.client.plugins import plugin_name

        for plugin in self._initial_plugins:
            await self.plugins.add(plugin_name(plugin), plugin, "worker")
        await self.preloads.start()

    def _metrics(self) -> dict[str, Any]:
        out = super()._metrics()
        out["local_directory"] = self.local_directory or ""
        if self.nanny is not None:
            out["nanny"] = self.nanny
        custom = dict(self._startup_values)
        for key, f in self._extra_metrics.items():
            try:
                value = f(self)
            except Exception as e:  # a user's metric must not stop the heartbeat
                value = f"{type(e).__name__}: {e}"
            custom[key] = _plain(value)
        if custom:
            out["custom"] = custom
        return out

    def _lifetime_reached(self) -> None:
        self._lifetime_timer = None
        if self.status == "running":
            logger.info("worker %s reached its lifetime of %.1f s", self.address, self.lifetime or 0)
            self._graceful = self.loop.create_task(
                self.close_gracefully(reason="worker lifetime reached"))

    async def close_gracefully(self, restart: bool | None = None, reason: str = "") -> None:
        """Close; with ``restart`` (default: ``lifetime_restart``) the process
        exits asking its nanny to start a new worker.  Data only this worker
        holds is recomputed elsewhere from its tasks (scattered data is lost)."""
        from shoal.cluster.process import RESTART_EXIT_CODE

        if restart is None:
            restart = self.lifetime_restart
        if restart:
            self.exit_code = RESTART_EXIT_CODE
        await self.close(reason or "closing gracefully")

    async def close(self, reason: str = "") -> None:
        if self.status in ("closing", "closed"):
            await super().close(reason)
            return
        if self._lifetime_timer is not None:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None
        await self.preloads.teardown()
        await super().close(reason)

    def __repr__(self) -> str:
        return (f"<Worker {self.address or '(not started)'!r}, name: {self.name!r}, "
                f"status: {self.status}, threads: {self.nthreads}>")


def _lifetime(lifetime: Any, stagger: Any, config: Any) -> float | None:
    """Seconds until the worker closes itself: ``lifetime`` plus or minus a
    random part of ``stagger``, as in dask (None: it lives on)."""
    if lifetime is None:
        lifetime = config.get("worker.lifetime.duration")
    if lifetime is None:
        return None
    seconds = parse_timedelta(lifetime)
    if stagger is None:
        stagger = config.get("worker.lifetime.stagger")
    spread = parse_timedelta(stagger) if stagger is not None else 0.0
    if seconds <= 0 or spread < 0:
        raise ValueError(f"lifetime must be positive and lifetime_stagger not negative, got "
                         f"{lifetime!r} and {stagger!r}")
    return max(0.0, seconds + (random.random() * 2 - 1) * spread)


def _plain(value: Any) -> Any:
    """A metric as the wire carries it: a number, string, bool or None, else its repr."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)

