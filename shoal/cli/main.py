"""Command line: ``shoal scheduler``, ``shoal worker``, ``shoal dashboard``, ``shoal demo``.

A cluster across machines::

    machine-a$ shoal scheduler --host 0.0.0.0 --scheduler-file /shared/scheduler.json \
                   --token-file ~/.shoal/token        # made (0600) if it does not exist
    machine-b$ shoal worker --scheduler-file /shared/scheduler.json --nworkers 2 \
                   --token-file ~/.shoal/token        # the same file, or SHOAL_TOKEN

The options are dask.distributed's (``dask scheduler``, ``dask worker``)
where they mean the same; docs/usage.md lists them all, and those of dask's
that mean nothing in shoal (each accepted with a message, or refused).
This module parses; ``shoal/cli/servers.py`` runs what was asked.
"""

from __future__ import annotations

import argparse
import functools
import sys

SUPPRESS = argparse.SUPPRESS


def _version() -> str:
    from shoal import __version__

    return f"shoal, version {__version__}"


def _add_common(p: argparse.ArgumentParser, log_level: str) -> None:
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--pid-file", default="", help="write this process's id to this file "
                   "(removed at exit)")
    p.add_argument("--preload", action="append", default=None, metavar="MODULE",
                   help="a module name or .py file whose dask_setup(server) runs at start and "
                        "dask_teardown(server) at exit (repeatable)")
    p.add_argument("--preload-argv", default=None, metavar="ARGS",
                   help="arguments for a preload whose dask_setup is a click command (also: "
                        "any arguments after the known options, as with dask)")
    p.add_argument("--dashboard-address", default=None,
                   help="scheduler: where its dashboard serves (default :8787 on the scheduler's "
                        "host, the next free port if taken; beyond loopback it needs the "
                        "cluster's token); worker: accepted and kept (no worker dashboard)")
    p.add_argument("--dashboard", dest="dashboard", action="store_true", default=None,
                   help="serve the dashboard (the scheduler's default)")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    p.add_argument("--dashboard-prefix", default=None, help="serve the dashboard under this path")
    p.add_argument("--interface", default=None,
                   help="listen on this network interface's address, e.g. eth0")
    p.add_argument("--protocol", default=None,
                   help="tcp, or tls (the default when TLS files are given)")
    p.add_argument("--contact-address", default=None,
                   help="the address to tell others, when not the one listened on")
    p.add_argument("--token-file", default=None, metavar="PATH",
                   help="a file holding the cluster's token, readable by its owner only (mode "
                        "0600); a scheduler writes a new token there if it does not exist "
                        "(also: SHOAL_TOKEN_FILE, setting security.token-file)")
    p.add_argument("--token", default=None,
                   help="the cluster's token (visible to other users of this machine in the "
                        "process list: prefer --token-file or the SHOAL_TOKEN variable)")
    p.add_argument("--tls-ca-file", default=None,
                   help="the certificate authority (PEM) that signed the cluster's certificates")
    p.add_argument("--tls-cert", default=None, help="this process's certificate (PEM)")
    p.add_argument("--tls-key", default=None,
                   help="this process's private key (PEM), unless it is in --tls-cert")
    p.add_argument("--validate", action="store_true",
                   help="check the state machine's invariants after every step (slow)")
    p.add_argument("--log-level", default=log_level)
    p.add_argument("--parent-watch", action="store_true", help=SUPPRESS)


def _add_scheduler(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("scheduler", help="run a scheduler",
                       description="Run a shoal scheduler (as `dask scheduler`).")
    s.add_argument("--host", default=None,
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 "
                        "for every interface), or a whole address like tcp://0.0.0.0:8786")
    s.add_argument("--port", default=None, help="port to listen on (default 8786; 0: any free port)")
    s.add_argument("--scheduler-file", default="",
                   help="write the scheduler's address to this JSON file (mode 0600); workers "
                        "and clients read it")
    s.add_argument("--idle-timeout", default=None,
                   help="close after this long without work, e.g. 1h (setting "
                        "scheduler.idle-timeout)")
    s.add_argument("--jupyter", action="store_true", default=False,
                   help="refused: shoal does not run a Jupyter server")
    s.add_argument("--no-jupyter", dest="jupyter", action="store_false")
    s.add_argument("--allowed-failures", type=int, default=None, help=SUPPRESS)
    s.add_argument("--worker-ttl", default=None, help=SUPPRESS)
    s.add_argument("--blocked-handlers", default=None, help=SUPPRESS)
    s.add_argument("--fd", type=int, help=SUPPRESS)
    s.add_argument("--dashboard-link", default=None, help=SUPPRESS)  # a LocalCluster's, served by it
    # written the listening address and a newline once listening (how ssh waits)
    s.add_argument("--ready-fd", type=int, default=None, help=SUPPRESS)
    _add_common(s, "INFO")


def _add_worker(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    w = sub.add_parser("worker", help="run workers for a scheduler",
                       description="Run shoal workers for a scheduler (as `dask worker`).")
    w.add_argument("scheduler", nargs="?", default=None,
                   help="the scheduler's address, e.g. tcp://10.0.0.1:8786 (or --scheduler-file)")
    w.add_argument("--scheduler-file", default=None,
                   help="read the scheduler's address from this file (written by "
                        "`shoal scheduler --scheduler-file`), waiting for it to appear")
    w.add_argument("--nthreads", type=int, default=0,
                   help="threads per worker (default: the cores divided among the workers)")
    w.add_argument("--nworkers", default=None,
                   help="worker processes: a number (negative: cores + 1 + n) or 'auto'")
    w.add_argument("--name", default=None,
                   help="worker name (with --nworkers > 1: suffixed with -0, -1, ...)")
    w.add_argument("--host", default=None,
                   help="interface to listen on (default: 127.0.0.1 for a scheduler on this "
                        "machine, else 0.0.0.0)")
    w.add_argument("--worker-port", "--port", dest="worker_port", default=None,
                   help="port to listen on (default any); a range like 9000:9010 for --nworkers")
    w.add_argument("--listen-address", default=None,
                   help="the address to listen on, e.g. tcp://0.0.0.0:9000 (instead of "
                        "--host/--worker-port)")
    w.add_argument("--nanny-port", default=None,
                   help="accepted and unused: shoal's nanny listens on no port")
    w.add_argument("--memory-limit", default="auto",
                   help="per worker: a size (4GB), a fraction of this machine's memory (0.5), "
                        "'auto' (its share by threads; the default) or 0 (no limit); the nanny "
                        "restarts a worker above it")
    w.add_argument("--resources", default=None, help='for submit(resources=), e.g. "GPU=2 MEM=10e9"')
    w.add_argument("--local-directory", default=None,
                   help="where each worker makes its scratch directory, removed at exit "
                        "(default: setting temporary-directory, else the system's temporary "
                        "directory)")
    w.add_argument("--death-timeout", "--connect-timeout", dest="death_timeout", default=None,
                   help="seconds to keep trying to reach the scheduler before giving up")
    w.add_argument("--lifetime", default=None,
                   help="close each worker after this long, e.g. 1h (setting "
                        "worker.lifetime.duration)")
    w.add_argument("--lifetime-stagger", default=None,
                   help="plus or minus a random part of this, so workers do not leave together")
    w.add_argument("--lifetime-restart", dest="lifetime_restart", action="store_true",
                   default=None, help="start a new worker when one's lifetime ends (with --nanny)")
    w.add_argument("--no-lifetime-restart", dest="lifetime_restart", action="store_false")
    w.add_argument("--nanny", dest="nanny", action="store_true", default=True,
                   help="run workers in child processes that are restarted if they die (default)")
    w.add_argument("--no-nanny", dest="nanny", action="store_false")
    w.add_argument("--preload-nanny", action="append", default=None,
                   help="refused: shoal's nanny runs no preloads (use --preload)")
    w.add_argument("--worker-class", default=None,
                   help="shoal.Worker (dask.distributed.Worker is taken to mean it); no other")
    w.add_argument("--scheduler-sni", default=None,
                   help="the host name to check the scheduler's TLS certificate against")
    w.add_argument("--heartbeat-interval", default=None, help=SUPPRESS)
    w.add_argument("--ready-fd", type=int, default=None, help=SUPPRESS)
    # set by a supervisor (LocalCluster's, a Nanny's, this command's) on its workers
    w.add_argument("--supervised", action="store_true", help=SUPPRESS)
    # set by the nanny: this worker replaces one that died, for this reason
    w.add_argument("--restarted", default="", help=SUPPRESS)
    _add_common(w, "WARNING")


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The parser (made once per process: ~7 ms; the fork server makes it
    before forking, so that its children don't)."""
    ap = argparse.ArgumentParser(prog="shoal", description="shoal: a distributed futures engine")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True)
    _add_scheduler(sub)
    _add_worker(sub)

    z = sub.add_parser("zygote", help=SUPPRESS)  # LocalCluster's fork server
    z.add_argument("--fds", default="")

    from shoal.dashboard.process import add_arguments

    add_arguments(sub.add_parser("dashboard", help="serve the dashboard of a running scheduler"))

    d = sub.add_parser("demo", help="start a local cluster and run a small real workload")
    d.add_argument("--n-workers", type=int, default=None)
    d.add_argument("--threads-per-worker", type=int, default=None)
    d.add_argument("--files", type=int, default=40, help="files in the read-transform-write loop")
    d.add_argument("--linger", type=float, default=0.0,
                   help="seconds the cluster (and its dashboard) stays up after the workload")
    return ap


def split_preload_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """``shoal worker ... --preload m --flag 3``: the arguments from the first
    option the command does not know (or after ``--``) are the preload's, as
    with dask; they are split off before parsing, so that none is taken for
    the scheduler's address."""
    if len(argv) < 1 or argv[0] not in ("scheduler", "worker"):
        return argv, []
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = sub.choices[argv[0]]._option_string_actions
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return argv[:i], argv[i + 1:]
        if token.startswith("-") and len(token) > 1 and not token[1].isdigit():
            action = actions.get(token.split("=", 1)[0])
            if action is None:
                return argv[:i], argv[i:]
            if "=" not in token and action.nargs != 0:
                i += 1  # its value
        i += 1
    return argv, []


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    head, tail = split_preload_argv(raw)
    parser = build_parser()
    args = parser.parse_args(head)
    if args.command in ("scheduler", "worker"):
        from shoal.cli import servers

        try:
            return servers.run(args, tail)
        except servers.UsageError as e:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.choices[args.command].error(str(e))
    if args.command == "zygote":
        from shoal.cluster.run import setup_logging
        from shoal.cluster.zygote import run_zygote

        setup_logging("WARNING")
        return run_zygote([int(x) for x in args.fds.split(",") if x])
    if args.command == "dashboard":
        from shoal.cluster.run import setup_logging
        from shoal.dashboard.process import run_dashboard

        setup_logging(args.log_level)
        return run_dashboard(args.scheduler, args.dashboard_address, args.fd, args.prefix,
                             args.login, args.parent_watch)
    if args.command == "demo":
        from shoal.demo import run_demo

        return run_demo(args.n_workers, args.threads_per_worker, args.files, args.linger)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
