"""Start a local cluster's processes before the client has loaded itself.

``Client()`` with no address starts a ``LocalCluster``.  Most of the time
that takes is two Python processes importing modules: this one importing the
client (asyncio, msgspec, cloudpickle, shoal.client: ~100 ms) and the fork
server importing the scheduler and worker (~150 ms, interpreter included).
They need not wait for each other.  ``shoal.Client.__new__`` calls :func:`prestart`
first, which binds the scheduler's socket and launches the fork server, and
only then imports the client; the two imports run side by side on two cores,
and ``LocalCluster`` picks up what was started.

This module imports nothing heavy, on purpose: it runs before the client.
"""

from __future__ import annotations

import os
import socket

from shoal.comm.addresses import bind_socket

TYPE_CHECKING = False  # typing is not imported: this module runs before anything heavy
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Prestarted:
    """A bound scheduler socket and a fork server holding it."""

    def __init__(self, host: str, port: int) -> None:
        from shoal.cluster.zygote import ForkServer

        self.host = host
        self.port = port
        self.sock: socket.socket | None = bind_socket(host, port)
        try:
            self.forkserver: Any = ForkServer(pass_fds=(self.sock.fileno(),))
        except BaseException:
            self.sock.close()
            raise

    def matches(self, host: str, port: int) -> bool:
        return self.sock is not None and (host, port) == (self.host, self.port)

    def take(self) -> tuple[socket.socket, Any]:
        """Hand the socket and fork server over (once)."""
        assert self.sock is not None, "already taken or discarded"
        sock, self.sock = self.sock, None
        return sock, self.forkserver

    def discard(self) -> None:
        """Not used after all: stop the fork server, close the socket."""
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close()
            self.forkserver.shutdown()


def forkserver_enabled(early: bool = False) -> bool:
    """Whether local clusters fork their processes from a fork server
    (setting ``local-cluster.forkserver``).  ``early``: before the client has
    loaded (nothing heavy imported yet), judge by the environment alone:
    reading the configuration costs ~30 ms, and ``LocalCluster`` checks the
    full configuration later (it discards a fork server it should not use)."""
    if not hasattr(os, "fork"):
        return False
    from shoal import config

    if early and not config.loaded():
        raw = os.environ.get("SHOAL_LOCAL_CLUSTER__FORKSERVER", os.environ.get("SHOAL_FORKSERVER", "1"))
        return raw.lower() not in ("0", "false", "off", "no")
    return bool(config.get("local-cluster.forkserver"))


def prestart(address: Any, options: Mapping[str, Any]) -> Prestarted | None:
    """For ``Client(address, **options)``: if that will start a LocalCluster
    of processes through the fork server, start its fork server now.

    Anything unusual returns None and leaves the start to ``LocalCluster``,
    which then reports errors as it always does."""
    if address is not None or not forkserver_enabled(early=True):
        return None
    if options.get("asynchronous") or not options.get("processes", True):
        return None
    host = options.get("host", "127.0.0.1")
    port = options.get("scheduler_port", 0)
    if not isinstance(host, str) or not isinstance(port, int):
        return None
    try:
        return Prestarted(host, port)
    except Exception:
        return None
