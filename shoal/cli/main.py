"""Command line: ``shoal scheduler``, ``shoal worker ADDRESS``, ``shoal demo``.

A cluster across machines::

    machine-a$ shoal scheduler --host 0.0.0.0 --port 8786
    machine-b$ shoal worker tcp://machine-a:8786 --nthreads 4 --nworkers 2
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any


def _resources(text: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        name, sep, amount = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"resources look like 'GPU=2,MEM=10e9', not {part!r}")
        out[name] = float(amount)
    return out


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The parser (made once per process: ~7 ms; the fork server makes it
    before forking, so that its children don't)."""
    ap = argparse.ArgumentParser(prog="shoal", description="shoal: a distributed futures engine")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scheduler", help="run a scheduler")
    s.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=8786)
    s.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    s.add_argument("--parent-watch", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--validate", action="store_true", help="check invariants after every step (slow)")
    s.add_argument("--log-level", default="INFO")

    w = sub.add_parser("worker", help="run workers for a scheduler")
    w.add_argument("scheduler", help="scheduler address, e.g. tcp://10.0.0.1:8786")
    w.add_argument("--nthreads", type=int, default=1, help="threads per worker")
    w.add_argument("--nworkers", type=int, default=1, help="worker processes")
    w.add_argument("--name", default="", help="worker name (suffixed with -i when nworkers > 1)")
    w.add_argument("--host", default=None,
                   help="interface to listen on (default: 127.0.0.1 for a local scheduler, "
                        "else 0.0.0.0)")
    w.add_argument("--port", type=int, default=0)
    w.add_argument("--memory-limit", default="0",
                   help="restart a worker above this size, e.g. 4GB or auto (default: no limit)")
    w.add_argument("--resources", default="", help="e.g. GPU=2,MEM=10e9")
    w.add_argument("--nanny", dest="nanny", action="store_true", default=True,
                   help="run workers in child processes that are restarted if they die (default)")
    w.add_argument("--no-nanny", dest="nanny", action="store_false")
    w.add_argument("--connect-timeout", type=float, default=30.0)
    w.add_argument("--parent-watch", action="store_true", help=argparse.SUPPRESS)
    w.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    # set by a supervisor (LocalCluster's, or this command's with --nanny) on its workers
    w.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    w.add_argument("--validate", action="store_true")
    w.add_argument("--log-level", default="WARNING")

    z = sub.add_parser("zygote", help=argparse.SUPPRESS)  # LocalCluster's fork server
    z.add_argument("--fds", default="")

    d = sub.add_parser("demo", help="start a local cluster and run a small real workload")
    d.add_argument("--n-workers", type=int, default=None)
    d.add_argument("--threads-per-worker", type=int, default=None)
    d.add_argument("--files", type=int, default=40, help="files in the read-transform-write loop")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shoal.cluster.run import setup_logging

    if args.command == "scheduler":
        from shoal.cluster.run import run_scheduler

        setup_logging(args.log_level)
        run_scheduler(args.host, args.port, args.fd, args.parent_watch, args.validate)
        return 0
    if args.command == "worker":
        setup_logging(args.log_level)
        return _worker(args)
    if args.command == "zygote":
        from shoal.cluster.zygote import run_zygote

        setup_logging("WARNING")
        return run_zygote([int(x) for x in args.fds.split(",") if x])
    if args.command == "demo":
        from shoal.demo import run_demo

        return run_demo(args.n_workers, args.threads_per_worker, args.files)
    return 2  # pragma: no cover


def _worker(args: Any) -> int:
    from shoal.cluster.process import parse_memory
    from shoal.comm.addresses import get_host, normalize_address

    scheduler = normalize_address(args.scheduler)
    host = args.host
    if host is None:
        host = "127.0.0.1" if get_host(scheduler) in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"
    memory_limit = parse_memory(args.memory_limit, args.nworkers)
    if not args.nanny:
        from shoal.cluster.run import run_worker

        return run_worker(scheduler, args.nthreads, args.name, host, args.port, memory_limit,
                          _resources(args.resources), args.parent_watch, args.validate,
                          args.connect_timeout, args.ready_fd, args.supervised)
    return _supervise(args, scheduler, host, memory_limit)


def _supervise(args: Any, scheduler: str, host: str, memory_limit: int) -> int:
    """The nanny: run --nworkers worker processes, restarting any that die."""
    import signal
    import threading

    from shoal.cluster.process import Supervisor

    sup = Supervisor()
    base = args.name
    for i in range(args.nworkers):
        name = f"{base}-{i}" if base and args.nworkers > 1 else base
        child = ["worker", scheduler, "--nthreads", str(args.nthreads), "--host", host,
                 "--memory-limit", str(memory_limit), "--no-nanny", "--log-level", args.log_level,
                 "--connect-timeout", str(args.connect_timeout), "--supervised"]
        if name:
            child += ["--name", name]
        if args.port and args.nworkers == 1:
            child += ["--port", str(args.port)]
        if args.resources:
            child += ["--resources", args.resources]
        if args.validate:
            child.append("--validate")
        sup.add(name or f"worker-{i}", child, memory_limit)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
