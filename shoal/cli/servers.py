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
    args.security = _security(args)
    with _pid_file(args.pid_file):
        if args.command == "scheduler":
            return _scheduler(args, argv)
        return _worker(args, argv)


def _refuse(args: Any) -> None:
    if args.protocol is not None and args.protocol.removesuffix("://") not in ("tcp", "tls"):
        raise UsageError(f"--protocol {args.protocol}: shoal speaks tcp and tls between processes")
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


def _security(args: Any) -> Any:
    """The process's ``Security``: from ``--token``/``--token-file`` and the
    ``--tls-*`` options, else what a parent handed over in the environment
    (a LocalCluster, a Nanny, ``shoal worker --nworkers``), else the settings
    (``SHOAL_TOKEN``, ``SHOAL_TOKEN_FILE``, ``comm.tls.*``)."""
    from shoal.security import ENV_VAR, Security, security_from_env

    try:
        inherited = security_from_env()
    except ValueError as e:
        raise UsageError(str(e)) from None
    os.environ.pop(ENV_VAR, None)  # tasks and their subprocesses need not see it
    tls = {"--tls-ca-file": args.tls_ca_file, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    if inherited is not None and not args.token and not args.token_file and not any(tls.values()):
        return inherited
    if args.token:
        logger.warning("--token is visible to other users of this machine (ps, /proc): prefer "
                       "--token-file or the SHOAL_TOKEN environment variable")
    token: str | None = args.token
    if not token and args.token_file and args.command == "scheduler":
        token = _new_token_file(args.token_file)
    role = "scheduler" if args.command == "scheduler" else "worker"
    files: dict[str, Any] = {}
    if args.tls_ca_file:
        files["tls_ca_file"] = args.tls_ca_file
    for part, value in (("cert", args.tls_cert), ("key", args.tls_key)):
        if value:  # this process's certificate, also for the client it may make
            files[f"tls_{role}_{part}"] = files[f"tls_client_{part}"] = value
    if files and not (args.tls_ca_file and args.tls_cert):
        raise UsageError("TLS needs --tls-ca-file and --tls-cert (and --tls-key unless the key "
                         "is in the certificate file)")
    if files and args.protocol is None:
        args.protocol = "tls"
    try:
        return Security(require_encryption=True if files else None, token=token,
                        token_file=None if token else args.token_file, **files)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None


def _new_token_file(path: str) -> str | None:
    """``shoal scheduler --token-file PATH`` where PATH does not exist yet:
    a new token, written there (0600); None if the file exists (it is read)."""
    from shoal.security import generate_token, write_token_file

    if os.path.exists(os.path.expanduser(path)):
        return None
    token = generate_token()
    written = write_token_file(path, token)
    logger.warning("wrote a new token to %s (mode 0600): give workers and clients the same file "
                   "(--token-file) or its contents (SHOAL_TOKEN)", written)
    return token


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
        "security": args.security, "protocol": args.protocol,
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
        "protocol": args.protocol, "scheduler_sni": args.scheduler_sni,
    }
    if host is not None:
        options["host"] = host
    if not args.nanny:
        from shoal.cluster.run import run_worker

        try:
            return run_worker({"scheduler_ip": scheduler, "name": args.name, "port": ports[0],
                               "supervised": args.supervised, "security": args.security,
                               **options}, args.parent_watch, args.ready_fd, args.restarted)
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
    from shoal.security import security_env

    sup = Supervisor(env=security_env(args.security))  # never on the workers' command lines
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
