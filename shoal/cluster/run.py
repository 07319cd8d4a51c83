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


def tune_garbage_collector() -> None:
    """For a scheduler or worker process, once started (settings
    ``admin.gc.*``): what exists now (modules, functions, settings) lives as
    long as the process, so ``gc.freeze()`` takes it out of every later
    collection; and a larger first-generation threshold makes collections
    rarer while each task makes a few short-lived objects.  Together they
    took the scheduler's CPU per tiny task down ~12 % on a 60,000-task map.
    Never done in a client's process: that is the user's."""
    import gc

    from shoal import config

    if config.get("admin.gc.freeze"):
        gc.freeze()
    threshold = config.get("admin.gc.threshold")
    if threshold:
        _, second, third = gc.get_threshold()
        gc.set_threshold(int(threshold), second, third)


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
    tune_garbage_collector()
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


def run_scheduler(options: dict[str, Any], fd: int | None = None, parent_watch: bool = False,
                  print_address: bool = True, ready_fd: int | None = None) -> int:
    """Run a ``shoal.Scheduler(**options)`` until it closes (a signal, its
    parent gone, ``idle_timeout``, or a client's ``shutdown()``).  ``fd``: a
    listening socket to use (LocalCluster binds it first); ``ready_fd``: a
    pipe to write the listening address and a newline to once listening."""
    from shoal.deploy.scheduler import Scheduler

    async def main() -> None:
        sock = socket.socket(fileno=fd) if fd is not None else None
        server = Scheduler(sock=sock, **options)
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
        if ready_fd is not None:
            os.write(ready_fd, f"{server.address}\n".encode())
            os.close(ready_fd)
        await server.finished()

    _run(main)
    return 0


def run_worker(options: dict[str, Any], parent_watch: bool = False, ready_fd: int | None = None,
               restarted: str = "") -> int:
    """Run one ``shoal.Worker(**options)`` until it is closed; the process's
    exit code.  ``ready_fd``: a pipe to write the worker's address and a
    newline to once registered with the scheduler (how a nanny waits).
    ``restarted``: why the worker this one replaces died (the nanny's word,
    told to the scheduler at registration).

    Under a nanny (``parent_watch``), SIGTERM closes the worker and exits
    with 128 + SIGTERM, so that the nanny starts a new one, as dask's nanny
    does for a worker killed under it; EOF on stdin (the nanny stopping it)
    and SIGINT exit cleanly."""
    from shoal.cluster.process import RESTART_EXIT_CODE
    from shoal.deploy.worker import Worker

    exit_code = 0

    async def main() -> None:
        nonlocal exit_code
        server = Worker(**options)
        server.restart_reason = restarted
        loop = asyncio.get_running_loop()
        starting = loop.create_task(server.start())
        closing: list[asyncio.Task[None]] = []
        scheduler = options.get("scheduler_ip") or options.get("scheduler_file")

        def stop(code: int = 0) -> None:
            nonlocal exit_code
            exit_code = exit_code or code
            if not starting.done():
                starting.cancel()  # still connecting: give up now
            else:
                closing.append(loop.create_task(server.close("stopped")))

        if parent_watch:
            _watch_parent(loop, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        loop.add_signal_handler(signal.SIGTERM, stop, 128 + signal.SIGTERM if parent_watch else 0)
        registered = False
        try:
            await starting
            registered = True
        except asyncio.CancelledError:
            await server.close("stopped while starting")
            return
        except (OSError, TimeoutError) as e:
            logger.error("worker could not join the scheduler at %s: %s", scheduler, e)
            await server.close("could not join the scheduler")
            exit_code = 1
            return
        finally:
            if ready_fd is not None:
                if registered:
                    os.write(ready_fd, f"{server.address}\n".encode())
                os.close(ready_fd)
        await server.finished()
        # RESTART_EXIT_CODE when the scheduler asked for a fresh worker
        # (client.restart) or a lifetime ended with lifetime_restart: the
        # supervisor starts a new one
        exit_code = exit_code or server.exit_code or (RESTART_EXIT_CODE if server.restart_requested
                                                      else 0)

    _run(main)
    return exit_code
