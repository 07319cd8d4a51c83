"""``SSHCluster``: a scheduler on the first host and workers on the others,
started over ssh (with asyncssh), as dask's ``distributed.SSHCluster``.

    cluster = SSHCluster(["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                         connect_options={"known_hosts": None, "username": "me"},
                         worker_options={"nthreads": 2, "n_workers": 2})

Each process is one ssh session running ``python -m shoal scheduler`` or
``python -m shoal worker`` (``remote_python``, default: the path of this
Python).  What the command line must not show travels on the session's
standard input, read by the remote shell before it starts shoal: first the
cluster's token (``SHOAL_TOKEN``; see ``credentials.py``), then this
process's shoal settings (``SHOAL_INTERNAL_CONFIG``, as a local cluster's
children get them).  The rest of the input stays open: the remote process
watches it (``--parent-watch``) and shuts down when the session ends, so
closing the cluster (or losing this process) ends every remote process.

Readiness comes back on the session's standard output (``--ready-fd``):
the scheduler writes the address it listens on, each worker its own once
it joined.  The scheduler listens on every interface of its host unless
``scheduler_options`` says otherwise, and workers reach it at the first
host's address as given (``tcp://<hosts[0]>:<port>``), which is how this
machine reached it too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shlex
import sys
from typing import Any

from shoal.deploy.spec import ProcessInterface, SpecCluster

logger = logging.getLogger("shoal.deploy.ssh")

#: lines of a remote process's stderr kept for error messages
STDERR_LINES = 50
#: the shell's part of every remote command: take the token and the settings
#: from the first two lines of standard input, export the ones that were given
_STDIN_PREFIX = ("read -r SHOAL_TOKEN && read -r SHOAL_INTERNAL_CONFIG && "
                 '{ [ -z "$SHOAL_TOKEN" ] || export SHOAL_TOKEN; } && '
                 '{ [ -z "$SHOAL_INTERNAL_CONFIG" ] || export SHOAL_INTERNAL_CONFIG; } && exec ')


def _start_timeout() -> float:
    from shoal import config

    return config.duration("local-cluster.start-timeout") or 60.0


def _hidden_input(token: str | None) -> bytes:
    """What the remote shell reads first: the token, then the settings."""
    from shoal import config

    settings = config.env_for_children()[config.CHILD_ENV] if config.loaded() else ""
    return f"{token or ''}\n{settings}\n".encode()


class Process(ProcessInterface):
    """A shoal process on a remote host, in an ssh session of its own."""

    def __init__(self, host: str, connect_options: dict[str, Any], remote_python: str | None,
                 token: str | None) -> None:
        self.host = host
        self.connect_options = dict(connect_options or {})
        self.remote_python = remote_python or sys.executable
        self.token = token
        self.connection: Any = None
        self.proc: Any = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._drains: list[asyncio.Task[None]] = []
        super().__init__()

    async def _run(self, args: list[str], ready_lines: int) -> list[str]:
        """Start ``python -m shoal <args>`` remotely; its first ``ready_lines``
        lines of readiness."""
        try:
            import asyncssh
        except ImportError:
            raise ImportError("SSHCluster needs the asyncssh package: pip install asyncssh") from None
        self.connection = await asyncssh.connect(self.host, **self.connect_options)
        command = shlex.join([self.remote_python, "-m", "shoal", *args, "--parent-watch",
                              "--ready-fd", "3"])
        self.proc = await self.connection.create_process(_STDIN_PREFIX + command + " 3>&1")
        self.proc.stdin.write(_hidden_input(self.token).decode())
        self._drains.append(asyncio.ensure_future(self._keep(self.proc.stderr)))
        try:
            lines = await asyncio.wait_for(self._ready_lines(args[0], ready_lines),
                                           _start_timeout())
        except asyncio.TimeoutError:
            raise TimeoutError(f"{args[0]} on {self.host} was not ready within "
                               f"{_start_timeout():g} s; its last lines:\n"
                               + "\n".join(self._stderr)) from None
        self._drains.append(asyncio.ensure_future(self._keep(self.proc.stdout)))
        return lines

    async def _ready_lines(self, what: str, n: int) -> list[str]:
        lines: list[str] = []
        while len(lines) < n:
            line = await self.proc.stdout.readline()
            if not line:
                await asyncio.sleep(0.2)  # the last of its stderr
                raise RuntimeError(f"{what} on {self.host} exited before it was ready; its "
                                   "last lines:\n" + "\n".join(self._stderr))
            if line.startswith(("tcp://", "tls://")):
                lines.append(line.strip())
        return lines

    async def _keep(self, stream: Any) -> None:
        """Read a remote stream to the end (a full ssh window would stall the
        remote process), keeping the last lines for error messages."""
        try:
            async for line in stream:
                self._stderr.append(line.rstrip("\n"))
                logger.debug("%s: %s", self.host, line.rstrip())
        except Exception:
            pass

    async def close(self) -> None:
        """End the session: the remote process sees its input close and stops."""
        if self.status == "closed":
            return
        if self.proc is not None:
            try:
                self.proc.stdin.write_eof()
            except (OSError, EOFError):  # the session ended already (a retired worker)
                pass
            try:
                await asyncio.wait_for(self.proc.wait_closed(), 10)
            except (asyncio.TimeoutError, OSError):
                self.proc.close()
        if self.connection is not None:
            self.connection.close()
            await self.connection.wait_closed()
        for task in self._drains:
            task.cancel()
        await super().close()


class Scheduler(Process):
    """A shoal scheduler on ``address`` (a host), with ``kwargs``: the
    ``Scheduler`` keywords its command line carries."""

    def __init__(self, address: str, connect_options: dict[str, Any], kwargs: dict[str, Any],
                 remote_python: str | None = None, token: str | None = None) -> None:
        super().__init__(address, connect_options, remote_python, token)
        self.kwargs = dict(kwargs or {})

    async def start(self) -> None:
        from shoal.comm.addresses import parse_address, parse_host_port, unparse_host_port
        from shoal.deploy.child_args import scheduler_argv

        options = dict(self.kwargs)
        host = options.pop("host", None)
        interface = options.pop("interface", None)
        port = options.pop("port", 0)
        where = ["--interface", interface] if interface else ["--host", host or "0.0.0.0"]
        [listening] = await self._run(["scheduler", *where, "--port", str(port or 0),
                                       *scheduler_argv(options)], 1)
        listen_host, listen_port = parse_host_port(parse_address(listening)[1])
        contact = options.get("contact_address")
        if not contact:
            wildcard = listen_host in ("0.0.0.0", "::", "")
            contact = f"tcp://{unparse_host_port(self.host if wildcard else listen_host, listen_port)}"
        self.address = contact
        await super().start()


class Worker(Process):
    """``n_workers`` (in ``kwargs``, default 1) shoal workers on ``address``
    (a host) under one nanny (or one without, for ``worker_class``
    ``shoal.Worker``); started once they all joined the scheduler."""

    def __init__(self, scheduler: str, address: str, connect_options: dict[str, Any],
                 kwargs: dict[str, Any], worker_class: Any = "shoal.Nanny",
                 remote_python: str | None = None, loop: Any = None, name: Any = None,
                 token: str | None = None) -> None:
        from shoal.deploy.child_args import uses_nanny
        from shoal.deploy.keywords import refuse

        refuse("SSHCluster worker", loop=loop)
        super().__init__(address, connect_options, remote_python, token)
        self.scheduler = scheduler
        self.worker_class = worker_class
        self.nanny = uses_nanny(worker_class)
        self.name = name
        self.kwargs = dict(kwargs or {})
        self.n_workers = int(self.kwargs.pop("n_workers", 1))
        self.addresses: list[str] = []

    async def start(self) -> None:
        from shoal.deploy.child_args import worker_command_argv

        options = {**self.kwargs, "name": self.name}
        args = worker_command_argv(self.scheduler, options, nanny=self.nanny,
                                   nworkers=self.n_workers)
        self.addresses = await self._run(args, self.n_workers)
        self.address = self.addresses[0]
        await super().start()


def SSHCluster(
    hosts: list[str] | tuple[str, ...] | None = None,
    connect_options: dict[str, Any] | list[dict[str, Any]] | None = None,
    worker_options: dict[str, Any] | None = None,
    scheduler_options: dict[str, Any] | None = None,
    worker_class: str = "shoal.Nanny",
    remote_python: str | list[str] | None = None,
    **kwargs: Any,
) -> SpecCluster:
    """A scheduler on ``hosts[0]`` and a worker on each other host (repeat a
    host for more; ``worker_options={"n_workers": k}`` for k per host), over
    ssh (dask's keywords).  connect_options: ``asyncssh.connect`` keywords
    (``username``, ``port``, ``client_keys``, ``known_hosts``...), one dict
    for all hosts or one per host; worker_options, scheduler_options: the
    ``Worker``/``Scheduler`` keywords their command lines carry;
    remote_python: the Python on the hosts (one, or one per host).  Other
    keywords go to ``SpecCluster`` (``security``: an object with the
    cluster's ``token``; default: setting ``security.token``,
    ``SHOAL_TOKEN``)."""
    from shoal.deploy.child_args import uses_nanny
    from shoal.deploy.credentials import cluster_token

    uses_nanny(worker_class)  # a class shoal cannot start is refused before any ssh
    if not hosts or not isinstance(hosts, (list, tuple)):
        raise ValueError(f"hosts must be a non-empty list of host names, got {hosts!r}")
    for name, value in (("connect_options", connect_options), ("remote_python", remote_python)):
        if isinstance(value, list) and len(value) != len(hosts):
            raise ValueError(f"{name} is a list of {len(value)}: give one for each of the "
                             f"{len(hosts)} hosts, or one for all")
    old = sorted(set(kwargs) & _OLD_KEYWORDS)
    if old:
        raise TypeError(f"SSHCluster({', '.join(old)}=...): keywords of dask's old SSHCluster; "
                        "use hosts=, connect_options=, worker_options= and scheduler_options=")
    token = cluster_token(kwargs.get("security"))
    worker_options = dict(worker_options or {})
    n_per_host = worker_options.get("n_workers", 1)

    def pick(value: Any, i: int) -> Any:
        return value[i] if isinstance(value, list) else value

    scheduler = {"cls": Scheduler, "options": {
        "address": hosts[0], "connect_options": pick(connect_options, 0) or {},
        "kwargs": dict(scheduler_options or {}), "remote_python": pick(remote_python, 0),
        "token": token}}
    workers = {}
    for i, host in enumerate(hosts[1:]):
        workers[i] = {"cls": Worker, "options": {
            "address": host, "connect_options": pick(connect_options, i + 1) or {},
            "kwargs": worker_options, "worker_class": worker_class,
            "remote_python": pick(remote_python, i + 1), "token": token}}
        if n_per_host > 1:
            workers[i]["group"] = [f"-{j}" for j in range(n_per_host)]
    kwargs.setdefault("name", "SSHCluster")
    return SpecCluster(workers, scheduler, **kwargs)


#: keywords of dask's old SSHCluster (``distributed.deploy.old_ssh``)
_OLD_KEYWORDS = frozenset({
    "scheduler_addr", "scheduler_port", "worker_addrs", "nthreads", "nprocs", "n_workers",
    "ssh_username", "ssh_port", "ssh_private_key", "nohost", "logdir", "memory_limit",
    "worker_port", "nanny_port", "remote_dask_worker"})
