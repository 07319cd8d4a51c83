"""The main functions of scheduler and worker processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from shoal.client.loop import new_event_loop

logger = logging.getLogger("shoal")


def setup_logging(level: str = "INFO") -> None:
    """Print records of ``level`` and up on stderr; shoal's own loggers
    record INFO and up all the same, for the process's log buffer
    (``client.get_worker_logs()``, ``shoal.diagnostics.logs``)."""
    from shoal.diagnostics.logs import DEFAULT_FORMAT, LogBuffer

    printed = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=printed, format=DEFAULT_FORMAT, stream=sys.stderr)
    root = logging.getLogger()
    root.setLevel(printed)  # also in a process forked from one that set it up already
    for handler in root.handlers:
        if not isinstance(handler, LogBuffer):
            handler.setLevel(printed)
    logging.getLogger("shoal").setLevel(min(printed, logging.INFO))


def _watch_parent(loop: asyncio.AbstractEventLoop, on_gone: Any) -> None:
    """Our stdin is a pipe from the parent: EOF means the parent is gone."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            on_gone()

    loop.add_reader(fd, readable)


def _run(main: Any) -> None:
    """Run ``main()`` on a new event loop.  With the setting
    ``admin.cprofile-dir`` (``SHOAL_CPROFILE_DIR``), the event loop thread is
    profiled and the stats written there on exit (for the performance work:
    ``pstats`` reads them)."""
    from shoal import config

    profile_dir = config.get("admin.cprofile-dir")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        if profiler is not None and profile_dir:
            profiler.disable()
            role = "scheduler" if "scheduler" in sys.argv else "worker"
            profiler.dump_stats(os.path.join(profile_dir, f"{role}-{os.getpid()}.pstats"))


def run_scheduler(host: str = "127.0.0.1", port: int = 8786, fd: int | None = None,
                  parent_watch: bool = False, validate: bool = False,
                  print_address: bool = True) -> None:
    from shoal.scheduler.server import SchedulerServer

    async def main() -> None:
        sock = None
        if fd is not None:
            sock = socket.socket(fileno=fd)
        server = SchedulerServer(f"tcp://{host}:{port}", sock=sock, validate=validate)
        closing: list[asyncio.Task[None]] = []
        await server.start()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            closing.append(loop.create_task(server.close()))

        if parent_watch:
            _watch_parent(loop, stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        if print_address:
            logger.info("scheduler listening at %s", server.address)
        await server.finished()

    _run(main)


def run_worker(scheduler: str, nthreads: int = 1, name: str = "", host: str = "127.0.0.1",
               port: int = 0, memory_limit: int = 0, resources: dict[str, float] | None = None,
               parent_watch: bool = False, validate: bool = False,
               connect_timeout: float | None = None, ready_fd: int | None = None,
               supervised: bool = False) -> int:
    """Run one worker until it is closed; return the process's exit code:
    ``RESTART_EXIT_CODE`` when the scheduler asked for a fresh worker
    (``client.restart``), which tells the supervisor to start one.
    ``ready_fd``: a pipe to write one byte to once registered with the
    scheduler (how LocalCluster waits).  ``supervised``: a supervisor will
    restart this worker when asked (the scheduler is told)."""
    from shoal.cluster.process import RESTART_EXIT_CODE
    from shoal.worker.server import WorkerServer

    exit_code = 0

    async def main() -> None:
        nonlocal exit_code
        server = WorkerServer(
            scheduler, nthreads=nthreads, name=name, host=host, port=port,
            memory_limit=memory_limit, resources=resources, validate=validate,
            connect_timeout=connect_timeout, supervised=supervised,
        )
        loop = asyncio.get_running_loop()
        starting = loop.create_task(server.start())
        closing: list[asyncio.Task[None]] = []

        def stop() -> None:
            if not starting.done():
                starting.cancel()  # still connecting: give up now
            else:
                closing.append(loop.create_task(server.close("stopped")))

        if parent_watch:
            _watch_parent(loop, stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            await starting
        except asyncio.CancelledError:
            await server.close("stopped while starting")
            return
        except (OSError, TimeoutError) as e:
            logger.error("worker could not join the scheduler at %s: %s", scheduler, e)
            exit_code = 1
            return
        finally:
            if ready_fd is not None and not starting.cancelled() and starting.exception() is None:
                os.write(ready_fd, b"1")
            if ready_fd is not None:
                os.close(ready_fd)
        await server.finished()
        if server.restart_requested:
            exit_code = RESTART_EXIT_CODE

    _run(main)
    return exit_code
