"""``shoal.Scheduler``: a scheduler started from Python, with dask.distributed's
keywords, as the ``shoal scheduler`` command starts one.

    async with Scheduler(port=0) as s:        # or: s = await Scheduler()
        print(s.address)                       # tcp://127.0.0.1:41234

It is the scheduler shell (``SchedulerServer``) plus what dask's
``Scheduler`` adds around scheduling: a scheduler file written when it
starts (atomically, 0600) and removed when it closes, preload modules,
closing by itself after ``idle_timeout`` without work, handlers blocked by
name, and ``await``/``async with``.

It listens on 127.0.0.1 unless told another host: reaching it from other
machines is a decision (``host="0.0.0.0"``), not a default.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shoal.deploy.keywords import check_protocol, checked_plugins, refuse
from shoal.deploy.lifecycle import Startable
from shoal.deploy.preload import Preloads
from shoal.deploy.sizing import interface_address
from shoal.scheduler.server import SchedulerServer
from shoal.units import parse_timedelta

logger = logging.getLogger("shoal.scheduler")


class IdleClock:
    """When a scheduler has been idle for ``timeout`` seconds (dask's rule):
    idle means no task changed state since the last look and nothing is
    queued, waiting for a worker, or running.  Connected clients alone do
    not keep a scheduler alive.  Pure: the caller passes the time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.idle_since: float | None = None
        self._counter = -1

    def expired(self, now: float, transitions: int, busy: bool) -> bool:
        if transitions != self._counter or busy:
            self._counter = transitions
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = now
            return False
        return now - self.idle_since >= self.timeout


def contact_host() -> str:
    """This machine's address as others see it (the route to a public
    address, found without sending anything), for a wildcard listener."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostbyname(socket.gethostname())


class Scheduler(SchedulerServer, Startable):
    """A shoal scheduler, made and run from Python (dask.distributed's keywords).

    host, port, interface, protocol: where to listen (default
        ``127.0.0.1``, port 0: any free port; ``interface="eth0"`` listens
        on that interface's address); ``contact_address``: the address
        written to the scheduler file, if not the one listened on.
    scheduler_file: a JSON file to write the scheduler's address to
        (workers and clients read it), removed when the scheduler closes.
    idle_timeout: close after this long without work (setting
        ``scheduler.idle-timeout``; None: never).
    allowed_failures, worker_ttl: as the settings ``scheduler.allowed-failures``
        and ``scheduler.worker-ttl``, for this scheduler.
    preload, preload_argv: modules whose ``dask_setup(scheduler)`` runs once
        it listens and ``dask_teardown(scheduler)`` when it closes (settings
        ``scheduler.preload``, ``scheduler.preload-argv``).
    blocked_handlers: names of client requests this scheduler refuses
        (shoal's request names, e.g. ``["run_on_scheduler"]``).
    security: a ``shoal.Security``: the token clients and workers must
        prove, TLS certificates (``protocol="tls"``).  Default: from the
        settings; listening beyond loopback without a token, the scheduler
        generates one, writes it to a 0600 file and logs where
        (``scheduler.token_file``).  See docs/security.md.
    validate: check the state machine's invariants after every step (slow).
    dashboard_address: where to serve the dashboard (``":8787"``: the
        scheduler's host, the next free port if taken; beyond loopback it
        asks for the cluster's token); dashboard: serve it (default: when
        ``dashboard_address`` is given, as in dask); http_prefix: the path
        it is served under.  See docs/dashboard.md.
    """

    def __init__(
        self,
        *,
        services: Mapping[str, Any] | None = None,
        service_kwargs: Mapping[str, Any] | None = None,
        allowed_failures: int | None = None,
        extensions: Mapping[str, Any] | None = None,
        validate: bool | None = None,
        scheduler_file: str | None = None,
        security: Any = None,
        worker_ttl: float | str | None = None,
        idle_timeout: float | str | None = None,
        interface: str | None = None,
        host: str | None = None,
        port: int | str = 0,
        protocol: str | None = None,
        dashboard_address: str | None = None,
        dashboard: bool | None = None,
        http_prefix: str | None = "/",
        preload: str | Sequence[str] | None = None,
        preload_argv: str | Sequence[str] | None = None,
        plugins: Sequence[Any] = (),
        contact_address: str | None = None,
        transition_counter_max: bool | int = False,
        jupyter: bool = False,
        blocked_handlers: Sequence[str] | None = None,
        sock: Any = None,
        _dashboard_link: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"Scheduler() got unexpected keyword arguments {sorted(kwargs)}")
        refuse("Scheduler", services=services, service_kwargs=service_kwargs,
               extensions=extensions, transition_counter_max=transition_counter_max,
               jupyter=jupyter)
        from shoal.security import coerce_security

        security = coerce_security(security, "Scheduler")
        if protocol is None and security is not None and security.require_encryption:
            protocol = "tls"
        check_protocol(protocol)
        from shoal import config

        if interface is not None:
            if host is not None:
                raise ValueError("give host or interface, not both")
            host = interface_address(interface)
        address = listen_address(host, port, protocol)
        ttl = None if worker_ttl is None else parse_timedelta(worker_ttl)
        super().__init__(address, sock=sock, validate=bool(validate), worker_timeout=ttl,
                         security=security)
        if allowed_failures is not None:
            if not isinstance(allowed_failures, int) or allowed_failures < 0:
                raise ValueError(f"allowed_failures must be a count, got {allowed_failures!r}")
            self.state.allowed_failures = allowed_failures
        if idle_timeout is None:
            idle_timeout = config.get("scheduler.idle-timeout")
        self.idle_timeout = None if idle_timeout is None else parse_timedelta(idle_timeout)
        self.scheduler_file = scheduler_file
        self.contact_address = contact_address
        self.dashboard_address = dashboard_address
        self.dashboard = dashboard
        self.http_prefix = http_prefix
        self._dashboard_server: Any = None
        if _dashboard_link:  # served by the LocalCluster that started this scheduler
            self.dashboard_link = _dashboard_link
            port = _dashboard_link.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
            if port.isdigit():
                self.services["dashboard"] = int(port)
        for name in blocked_handlers or ():
            if name not in self.handlers:
                raise ValueError(f"blocked_handlers: the scheduler has no request {name!r} "
                                 f"(it has {sorted(self.handlers)})")
            self.handlers[name] = _blocked(name)
        self._initial_plugins = checked_plugins(plugins, "SchedulerPlugin")
        self.preloads = Preloads(
            self,
            config.get("scheduler.preload") if preload is None else preload,
            config.get("scheduler.preload-argv") if preload_argv is None else preload_argv,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Scheduler:
        await super().start()
        from shoal.client.plugins import plugin_name

        for plugin in self._initial_plugins:
            await self.plugins.add_plugin(plugin, plugin_name(plugin))
        if self.scheduler_file:
            from shoal.deploy.scheduler_file import write_scheduler_file

            write_scheduler_file(self.scheduler_file, self.identity())
        self._start_dashboard()
        await self.preloads.start()
        if self.idle_timeout:
            self._spawn(self._close_when_idle(self.idle_timeout))
        return self

    def _start_dashboard(self) -> None:
        """Bind the dashboard's address; it is served (in a process of its
        own) from the first connection on."""
        wanted = self.dashboard if self.dashboard is not None else self.dashboard_address is not None
        if not wanted:
            return
        from shoal.comm.addresses import parse_address, parse_host_port
        from shoal.dashboard.launch import Dashboard

        scheme, loc = parse_address(self.address)
        host, port = parse_host_port(loc) if scheme == "tcp" else ("127.0.0.1", 0)
        local = self.address  # the dashboard process connects on this machine
        if host in ("0.0.0.0", "::"):
            local = f"tcp://127.0.0.1:{port}" if host == "0.0.0.0" else f"tcp://[::1]:{port}"
        self._dashboard_server = Dashboard(self.dashboard_address or ":8787", local,
                                           default_host=host, prefix=self.http_prefix or "",
                                           thread=scheme == "inproc", security=self.security)
        self.dashboard_link = self._dashboard_server.link
        self.services["dashboard"] = self._dashboard_server.port
        logger.info("dashboard at %s", self.dashboard_link)

    def identity(self) -> dict[str, Any]:
        """What the scheduler file holds (dask's layout)."""
        return {"type": "Scheduler", "id": self.id, "address": self.contact(),
                "services": dict(self.services), "started": self.started, "workers": {}}

    def contact(self) -> str:
        """The address to give others: ``contact_address``, else the one
        listened on with a wildcard host replaced by this machine's address."""
        if self.contact_address:
            return self.contact_address
        from shoal.comm.addresses import parse_address, parse_host_port, unparse_host_port

        scheme, loc = parse_address(self.address)
        if scheme not in ("tcp", "tls"):
            return self.address
        host, port = parse_host_port(loc)
        if host in ("0.0.0.0", "::", ""):
            return f"{scheme}://{unparse_host_port(contact_host(), port)}"
        return self.address

    async def _close_when_idle(self, timeout: float) -> None:
        clock = IdleClock(timeout)
        interval = max(0.01, timeout / 4)
        while self.status == "running":
            await asyncio.sleep(interval)
            state = self.state
            busy = bool(state.queued or state.unrunnable
                        or any(w.processing for w in state.workers.values()))
            if clock.expired(time.monotonic(), state.transition_counter, busy):
                logger.info("scheduler closing after being idle for %.1f s", timeout)
                self._spawn(self.close())
                return

    async def close(self) -> None:
        if self.status in ("closing", "closed"):
            await super().close()
            return
        await self.preloads.teardown()
        if self._dashboard_server is not None:
            await asyncio.to_thread(self._dashboard_server.close)
        await super().close()
        if self.scheduler_file:
            _remove_if_ours(self.scheduler_file, self.id)

    def adaptive_target(self, target_duration: float | str | None = None) -> int:
        """How many workers the current work wants (dask's; what
        ``cluster.adapt()`` asks; see ``shoal/scheduler/scaling.py``)."""
        from shoal import config
        from shoal.scheduler.scaling import adaptive_target

        if target_duration is None:
            target_duration = config.get("adaptive.target-duration")
        return adaptive_target(self.state, parse_timedelta(target_duration))

    def workers_to_close(self, memory_ratio: float | None = None, n: int | None = None,
                         key: Any = None, minimum: int | None = None, target: int | None = None,
                         attribute: str = "address") -> list[Any]:
        """Workers that could retire cheaply: idle, holding least (dask's)."""
        from shoal.scheduler.scaling import close_candidates

        return close_candidates(self.state, memory_ratio, n, key, minimum, target, attribute)

    def __repr__(self) -> str:
        return (f"<Scheduler {self.address or '(not started)'!r}, workers: {len(self.workers)}, "
                f"status: {self.status}>")


def listen_address(host: str | None, port: Any, protocol: str | None) -> str:
    """The address to listen on from dask's host/port/protocol keywords
    (``host`` may be a whole address: ``"tcp://0.0.0.0:8786"``)."""
    from shoal.comm.addresses import parse_address, parse_host_port, unparse_host_port

    name = (protocol or "tcp").removesuffix("://")
    if host and "://" in host:
        scheme, loc = parse_address(host)
        if scheme == "inproc":
            return host
        h, p = parse_host_port(loc, int(port or 0))
        return f"{scheme}://{unparse_host_port(h, p)}"
    if name == "inproc":
        import uuid

        return f"inproc://scheduler-{uuid.uuid4().hex[:12]}"
    if host and host.count(":") == 1 and not host.startswith("["):
        h, p = parse_host_port(host)
        return f"{name}://{unparse_host_port(h, p)}"
    try:
        number = int(port or 0)
    except (TypeError, ValueError):
        raise ValueError(f"port must be a number, got {port!r}") from None
    return f"{name}://{unparse_host_port(host or '127.0.0.1', number)}"


def _blocked(name: str) -> Any:
    async def refuse_request(client_id: str, **args: Any) -> Any:
        raise PermissionError(f"the scheduler blocks {name!r} requests (blocked_handlers)")

    return refuse_request


def _remove_if_ours(path: str, scheduler_id: str) -> None:
    """Remove the scheduler file, unless another scheduler wrote it since."""
    import json

    try:
        with open(path) as f:
            if json.load(f).get("id") != scheduler_id:
                return
        os.unlink(path)
    except (OSError, ValueError, AttributeError):
        pass
