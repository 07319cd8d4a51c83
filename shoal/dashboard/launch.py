"""Where the dashboard listens, and starting it.

``dashboard_address`` as in dask: ``":8787"`` (the default: the cluster's
host, port 8787, or the next free port if it is taken), ``"0.0.0.0:8787"``,
``8787``, ``":0"`` (any free port), or ``None`` (no dashboard).

The address is bound here, at once, so ``dashboard_link`` is known as soon
as the cluster is; the dashboard itself (``shoal dashboard``, a process of
its own: ``app.py``) is started when the first connection arrives, so a
cluster nobody looks at pays nothing for it but a listening socket and a
thread blocked in ``select``.  With ``thread=True`` (a ``LocalCluster`` of
``processes=False``, whose scheduler is not reachable from another process)
it runs instead on a thread of this process, with its own event loop.

Beyond loopback the dashboard asks for the cluster's token (its
``Security``'s); without one it is refused.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import threading
from typing import Any

from shoal.dashboard.auth import is_loopback, needs_login

logger = logging.getLogger("shoal.dashboard")

#: ports tried after a taken one before any free port is taken
PORT_TRIES = 20


def parse_address(address: str | int, default_host: str) -> tuple[str, int]:
    """``(host, port)`` of a ``dashboard_address``."""
    if isinstance(address, bool) or not isinstance(address, (str, int)):
        raise TypeError(f"dashboard_address must be a string like ':8787' or a port, got {address!r}")
    if isinstance(address, int):
        return default_host, address
    text = address.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.isdigit():
        host, port = "", text
    else:
        host, port = text, "0"
    try:
        number = int(port or 0)
    except ValueError:
        raise ValueError(f"dashboard_address {address!r}: the port must be a number") from None
    if not 0 <= number < 65536:
        raise ValueError(f"dashboard_address {address!r}: no such port")
    return host or default_host, number


def choose_host(requested: str, explicit: bool, token: str | None) -> str:
    """The host to bind: beyond loopback only with the cluster's ``token``;
    a default (``":8787"`` of a cluster listening everywhere) falls back to
    loopback."""
    if is_loopback(requested) or token:
        return requested
    if explicit:
        raise ValueError(
            f"a dashboard at {requested} would be reachable beyond this machine, which needs the "
            "cluster's token (Security(token=...), setting security.token); without one it serves "
            "on loopback only "
            "(dashboard_address='127.0.0.1:8787')")
    logger.warning("the dashboard serves on 127.0.0.1 only: serving it on %s needs the cluster's "
                   "token (setting security.token)", requested)
    return "127.0.0.1"


def bind(address: str | int, default_host: str = "127.0.0.1", token: str | None = None
         ) -> socket.socket:
    """A listening socket for ``address``; a taken port is followed by the
    next ones, then any free port (with a warning, as dask gives).  Beyond
    loopback only with the cluster's ``token``."""
    host, port = parse_address(address, default_host)
    explicit = not (isinstance(address, str) and address.strip().startswith(":"))
    host = choose_host(host, explicit, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port + i for i in range(PORT_TRIES) if port + i < 65536] if port else []
    for candidate in [*candidates, 0]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        if port and candidate != port:
            logger.warning("port %d is in use (another cluster's dashboard?): the dashboard is on "
                           "port %d instead", port, sock.getsockname()[1])
        return sock
    raise OSError(f"could not bind the dashboard to {host}")  # pragma: no cover: port 0 binds


def link(sock: socket.socket, prefix: str = "") -> str:
    """The address users open (setting ``dashboard.link``)."""
    from shoal import config

    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        from shoal.deploy.scheduler import contact_host

        host = contact_host()
    shown = f"[{host}]" if ":" in host else host
    prefix = "/" + prefix.strip("/") if prefix and prefix.strip("/") else ""
    template = str(config.get("dashboard.link"))
    return template.format(scheme="http", host=shown, port=port, prefix=prefix)


class Dashboard:
    """A bound dashboard address, and the dashboard served on it from the
    first connection on (a process; with ``thread=True``, a thread)."""

    def __init__(self, address: str | int, scheduler_address: str, default_host: str = "127.0.0.1",
                 prefix: str = "", thread: bool = False, lazy: bool = True,
                 security: Any = None) -> None:
        # the cluster's Security: the dashboard connects with it, and asks
        # browsers beyond loopback for its token
        self.security = security
        self.sock = bind(address, default_host, getattr(security, "token", None))
        self.scheduler_address = scheduler_address
        self.prefix = prefix or ""
        self.link = link(self.sock, self.prefix)
        self.port: int = self.sock.getsockname()[1]
        try:
            self.login = needs_login(self.sock.getsockname()[0])
            if self.login and not getattr(security, "token", None):
                raise ValueError("the dashboard asks for the cluster's token (dashboard.login: "
                                 "always) but the cluster has none: set security.token or give --token")
        except ValueError:
            self.sock.close()
            raise
        self.in_thread = thread
        self.proc: subprocess.Popen[bytes] | None = None
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        self._loop: Any = None
        self._stopped: Any = None
        self._watcher = threading.Thread(target=self._watch, args=(lazy,), daemon=True,
                                         name="shoal-dashboard-launcher")
        self._watcher.start()

    def _watch(self, lazy: bool) -> None:
        """Wait for the first connection (or the close), then start serving."""
        if lazy:
            ready, _, _ = select.select([self.sock.fileno(), self._wake_r], [], [])
            if self._wake_r in ready or self._closing:
                return
        if self.in_thread:
            self._serve_here()
        else:
            self._start_process()

    def _start_process(self) -> None:
        from shoal.cluster.zygote import child_env, shoal_command
        from shoal.security import security_env

        fd = self.sock.fileno()
        argv = shoal_command("dashboard", self.scheduler_address, "--fd", str(fd),
                             "--prefix", self.prefix or "/", "--parent-watch")
        if self.login:
            argv.append("--login")
        # the token and certificates by environment, never on a command line
        env = {**child_env(), **security_env(self.security)}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(fd,), env=env,
                                     close_fds=True)
        logger.info("dashboard process %d serving %s", self.proc.pid, self.link)

    def _serve_here(self) -> None:
        import asyncio

        from shoal.dashboard.app import serve

        async def main() -> None:
            self._stopped = asyncio.Event()
            if self._closing:
                return
            runner, feed = await serve(self.scheduler_address, sock=self.sock,
                                       prefix=self.prefix, login=self.login, security=self.security)
            try:
                await self._stopped.wait()
            finally:
                await feed.close()
                await runner.cleanup()

        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(main())
        except Exception:
            logger.exception("the dashboard stopped")
        finally:
            loop.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the dashboard and release its address."""
        if self._closing:
            return
        self._closing = True
        os.write(self._wake_w, b"x")
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass  # its loop is closed already
        self._watcher.join(timeout)
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # its --parent-watch: our going away
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
