"""The main of the dashboard process (``shoal dashboard``): serve until the
scheduler or the parent goes away, or a signal.

    shoal dashboard tcp://127.0.0.1:8786 --dashboard-address :8787

Started by a ``LocalCluster`` or a ``shoal scheduler`` (``launch.py``), it is
handed the listening socket (``--fd``) and watches its parent through its
stdin (``--parent-watch``); run by hand, it binds ``--dashboard-address``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from typing import Any

logger = logging.getLogger("shoal.dashboard")


def run_dashboard(scheduler: str, address: str, fd: int | None, prefix: str, login: bool,
                  parent_watch: bool) -> int:
    from shoal.cluster.run import _run, _watch_parent

    async def main() -> None:
        from shoal.dashboard import auth, launch
        from shoal.dashboard.app import serve
        from shoal.security import Security, security_from_env

        # the cluster's Security as its parent handed it over, else the settings'
        security = security_from_env() or Security()
        if fd is not None:
            sock = socket.socket(fileno=fd)
            wants_login = login
        else:
            sock = launch.bind(address, token=security.token)
            wants_login = auth.needs_login(sock.getsockname()[0])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if parent_watch:
            _watch_parent(loop, stop.set)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner, feed = await serve(scheduler, sock=sock, prefix="" if prefix == "/" else prefix,
                                   login=wants_login, security=security)
        if fd is None:
            logger.info("dashboard at %s", launch.link(sock, prefix))
        try:
            while not stop.is_set() and feed.connected():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            await feed.close()
            await runner.cleanup()

    try:
        _run(main)
    except (OSError, ValueError) as e:
        logger.error("the dashboard could not start: %s", e)
        return 1
    return 0


def add_arguments(parser: Any) -> None:
    parser.add_argument("scheduler", help="the scheduler's address, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--dashboard-address", default=":8787",
                        help="where to serve (default :8787 on 127.0.0.1, the next free port if "
                             "taken); beyond loopback it asks for the cluster's token")
    parser.add_argument("--prefix", default="/", help="serve under this path prefix")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--login", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent-watch", action="store_true", help=argparse.SUPPRESS)

