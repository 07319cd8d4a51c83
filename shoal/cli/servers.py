"""What ``shoal scheduler`` and ``shoal worker`` do with their options.

``shoal scheduler`` runs a ``shoal.Scheduler``.  ``shoal worker`` runs
``--nworkers`` ``shoal.Worker`` processes under one nanny (this process,
which restarts any that dies), or with ``--no-nanny`` one worker in this
process.  Options are turned into the classes' keywords here, with
dask.distributed's rules (see ``shoal/deploy/sizing.py``); a bad or
unsupported option is a ``UsageError`` (exit code 2 with the message).
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("shoal")

#: ``--worker-class`` values that mean shoal's worker
WORKER_CLASSES = {"shoal.Worker", "shoal.deploy.worker.Worker", "dask.distributed.Worker",
                  "distributed.Worker", "distributed.worker.Worker"}


class UsageError(Exception):
    """A command-line option shoal cannot use; the message says which and why."""


def run(args: Any, preload_argv: list[str]) -> int:
    from shoal.cluster.run import setup_logging

    setup_logging(args.log_level)
    _refuse(args)
    argv = _preload_argv(args, preload_argv)
    with _pid_file(args.pid_file):
        if args.command == "scheduler":
            return _scheduler(args, argv)
        return _worker(args, argv)


def _refuse(args: Any) -> None:
    if args.tls_ca_file or args.tls_cert or args.tls_key or getattr(args, "scheduler_sni", None):
        raise UsageError("TLS options: shoal does not support TLS yet")
    if args.protocol is not None and args.protocol.removesuffix("://") != "tcp":
        raise UsageError(f"--protocol {args.protocol}: shoal speaks tcp only between processes")
    if getattr(args, "jupyter", False):
        raise UsageError("--jupyter: shoal does not run a Jupyter server")
    if getattr(args, "preload_nanny", None):
        raise UsageError("--preload-nanny: shoal's nanny runs no preloads (use --preload)")
    worker_class = getattr(args, "worker_class", None)
    if worker_class is not None and worker_class not in WORKER_CLASSES:
        raise UsageError(f"--worker-class {worker_class}: shoal runs its own workers only "
                         "(shoal.Worker)")
    if args.command == "worker" and (args.dashboard_address or args.dashboard or args.dashboard_prefix):
        logger.info("worker dashboard options are kept, but shoal workers serve no dashboard "
                    "(the scheduler's shows them)")


def _preload_argv(args: Any, trailing: list[str]) -> list[str] | None:
    argv = shlex.split(args.preload_argv) if args.preload_argv else []
    argv += trailing
    if argv and not args.preload:
        raise UsageError(f"unrecognized arguments: {' '.join(trailing) or args.preload_argv} "
                         "(arguments after the options go to a --preload module; none was given)")
    return argv or None


@contextmanager
def _pid_file(path: str) -> Iterator[None]:
    """Write this process's id to ``path``; remove it at exit."""
    if not path:
        yield
        return
    with open(path, "w") as f:
        f.write(str(os.getpid()))

    def remove() -> None:
        try:
            with open(path) as f:
                if f.read().strip() != str(os.getpid()):
                    return
            os.unlink(path)
        except OSError:
            pass

    atexit.register(remove)
    try:
        yield
    finally:
        remove()


def _host(args: Any) -> str | None:
    if args.interface is not None:
        if args.host is not None:
            raise UsageError("give --host or --interface, not both")
        from shoal.deploy.sizing import interface_address

        try:
            return interface_address(args.interface)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return args.host  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- scheduler


def _scheduler(args: Any, preload_argv: list[str] | None) -> int:
    from shoal.cluster.run import run_scheduler

    host = _host(args) or "127.0.0.1"
    port = args.port
    if port is None and "://" not in host and host.count(":") != 1:
        port = 8786
    options: dict[str, Any] = {
        "host": host, "port": port, "scheduler_file": args.scheduler_file or None,
        "idle_timeout": args.idle_timeout, "preload": args.preload, "preload_argv": preload_argv,
        "dashboard_address": args.dashboard_address or ":8787",
        "dashboard": True if args.dashboard is None else args.dashboard,
        "http_prefix": args.dashboard_prefix or "/", "validate": args.validate,
        "_dashboard_link": args.dashboard_link,
        "contact_address": args.contact_address, "allowed_failures": args.allowed_failures,
        "worker_ttl": args.worker_ttl,
        "blocked_handlers": args.blocked_handlers.split(",") if args.blocked_handlers else None,
    }
    try:
        return run_scheduler(options, args.fd, args.parent_watch, ready_fd=args.ready_fd)
    except (ValueError, ImportError, NotImplementedError) as e:
        logger.error("the scheduler could not start: %s", e)
        return 1


# ---------------------------------------------------------------------- worker


def worker_ports(text: str | None, n: int) -> list[int]:
    """``--worker-port``: one port (only for one worker), a range ``a:b``
    spread over the workers, or none (any free port)."""
    if not text:
        return [0] * n
    first, sep, last = text.partition(":")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise UsageError(f"--worker-port {text}: expected a port or a range like 9000:9010") from None
    if lo == 0 and not sep:
        return [0] * n
    ports = list(range(lo, hi + 1))
    if len(ports) < n:
        raise UsageError(f"--worker-port {text}: not enough ports for {n} workers")
    return ports[:n]


def _worker(args: Any, preload_argv: list[str] | None) -> int:
    from shoal.comm.addresses import get_host, normalize_address
    from shoal.deploy.sizing import default_nthreads, parse_memory_limit, parse_nworkers
    from shoal.units import parse_timedelta

    try:
        nworkers, auto_threads = parse_nworkers(args.nworkers)
        nthreads = args.nthreads or auto_threads or default_nthreads(nworkers)
        memory_limit = parse_memory_limit(args.memory_limit, nthreads)
        death_timeout = None if args.death_timeout is None else parse_timedelta(args.death_timeout)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    if nworkers > 1 and not args.nanny:
        raise UsageError("--no-nanny runs one worker: it cannot be used with --nworkers > 1")
    if args.listen_address and (args.host or args.worker_port or nworkers > 1):
        raise UsageError("--listen-address is one address: not with --host, --worker-port or "
                         "--nworkers > 1")
    if args.contact_address and not args.listen_address:
        raise UsageError("--contact-address needs --listen-address")
    if args.nanny_port:
        logger.warning("--nanny-port %s: shoal's nanny listens on no port; ignored", args.nanny_port)
    if args.scheduler and args.scheduler_file:
        raise UsageError("give the scheduler's address or --scheduler-file, not both")
    if args.scheduler:
        scheduler = normalize_address(args.scheduler)
    elif args.scheduler_file:
        from shoal.deploy.scheduler_file import read_scheduler_file

        try:
            scheduler = read_scheduler_file(args.scheduler_file, death_timeout)
        except TimeoutError as e:
            logger.error("%s", e)
            return 1
    else:
        raise UsageError("give the scheduler's address (shoal worker tcp://HOST:8786) or "
                         "--scheduler-file")
    host = _host(args)
    if host is None and not args.listen_address:
        local = get_host(scheduler) in ("127.0.0.1", "localhost", "::1")
        host = "127.0.0.1" if local else "0.0.0.0"
    ports = worker_ports(args.worker_port, nworkers)
    options: dict[str, Any] = {
        "nthreads": nthreads, "memory_limit": memory_limit, "resources": args.resources,
        "local_directory": args.local_directory, "death_timeout": death_timeout,
        "lifetime": args.lifetime, "lifetime_stagger": args.lifetime_stagger,
        "lifetime_restart": args.lifetime_restart, "preload": args.preload,
        "preload_argv": preload_argv, "dashboard_address": args.dashboard_address,
        "dashboard": args.dashboard, "validate": args.validate or None,
        "heartbeat_interval": args.heartbeat_interval,
        "listen_address": args.listen_address, "contact_address": args.contact_address,
    }
    if host is not None:
        options["host"] = host
    if not args.nanny:
        from shoal.cluster.run import run_worker

        try:
            return run_worker({"scheduler_ip": scheduler, "name": args.name, "port": ports[0],
                               "supervised": args.supervised, **options}, args.parent_watch,
                              args.ready_fd)
        except (ValueError, TypeError, ImportError, NotImplementedError) as e:
            logger.error("the worker could not start: %s", e)
            return 1
    return _supervise(args, scheduler, nworkers, ports, memory_limit, options)


def _supervise(args: Any, scheduler: str, nworkers: int, ports: list[int], memory_limit: int,
               options: dict[str, Any]) -> int:
    """The nanny: run the worker processes, restarting any that die, until
    a signal (or, under a parent, its exit) or until every worker left."""
    import signal
    import threading

    from shoal.cluster.process import Supervisor
    from shoal.deploy.child_args import worker_argv

    sup = Supervisor()
    base = args.name
    options = {**options, "silence_logs": args.log_level}
    for i in range(nworkers):
        name = f"{base}-{i}" if base and nworkers > 1 else base
        child = worker_argv(scheduler, {**options, "name": name, "port": ports[i] or None})
        # --ready-fd: each worker writes its address there once it joined
        sup.add(name or f"worker-{i}", child, memory_limit, args.ready_fd)
    done = threading.Event()

    def stop(*_: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if args.parent_watch:
        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            done.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    while not done.wait(0.5):
        if not sup.workers:
            break  # every worker exited cleanly: the scheduler is gone
    sup.stop()
    return 0
