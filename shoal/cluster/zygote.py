"""A fork server: start scheduler and worker processes by forking one process
that has already imported everything they need.

Why: every Python process that imports asyncio, msgspec, cloudpickle and
shoal's server modules spends ~100 ms of CPU doing it; a LocalCluster of a
scheduler and two workers on a 2-core machine paid that three times, in
parallel on too few cores.  The zygote pays it once, then ``fork()``s each
process in a few milliseconds (the imported modules are shared copy-on-write),
and restarts a dead worker just as fast.

The zygote is single-threaded and has no event loop when it forks.

Protocol (JSON lines): the client writes commands to the zygote's stdin,

    {"op": "spawn", "id": 1, "argv": [...], "inherit": [fd, ...], "ready": true,
     "env": {...}}                    (env: the client's configuration, if it read one,
                                       and the cluster's Security: never in argv)
    {"op": "close", "fd": N}          close an fd passed to the zygote
    {"op": "stop", "pid": P}          ask a child to stop (close its stdin)

and reads events from its stdout:

    {"event": "started", "id": 1, "pid": P}
    {"event": "ready", "pid": P}      (with "ready": a worker registered)
    {"event": "exited", "pid": P, "code": C}

Each child's stdin is a pipe held by the zygote, so a child stops when the
zygote goes, and the zygote stops its children when its own stdin closes
(the client went away).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False  # typing is not imported: this module runs before anything heavy
if TYPE_CHECKING:
    from typing import IO, Any

# -- the zygote process ---------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a cluster's process: this one's, plus this
    process's configuration if it was read (values set in Python included)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(_config_env())
    return env


def _config_env() -> dict[str, str]:
    from shoal import config

    return config.env_for_children() if config.loaded() else {}


#: the directory holding the ``shoal`` package this process runs
_SHOAL_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shoal_command(*args: str) -> list[str]:
    """``python -m shoal <args>``, except that the child imports the shoal this
    process runs.  ``-m`` puts the current directory first on the child's
    path: started from a directory holding another ``shoal`` (a checkout, an
    older copy), the scheduler and workers would run that one.  The current
    directory stays on the path after it (tasks may import modules from it)."""
    code = (f"import sys; sys.path.insert(0, {_SHOAL_ROOT!r}); "
            "from shoal.cli.main import main; sys.exit(main())")
    return [sys.executable, "-c", code, *args]


def _warm_up() -> None:
    """Do once, before any fork, what every forked process does first thing
    (its children inherit the result): msgspec resolving the message types'
    annotations for the first decoder (~6 ms), name resolution importing the
    idna codec (~3 ms), building the command-line parser (~7 ms).  On two
    cores, the scheduler and two workers starting at once paid each three
    times."""
    import encodings.idna  # noqa: F401
    import ipaddress  # noqa: F401  (shoal.security.is_loopback, in every server)

    from shoal import config
    from shoal.cli.main import build_parser
    from shoal.comm.codec import MessageCodec

    MessageCodec()
    build_parser()
    config.get("comm")  # donfig and YAML imported, files read: once for every child


def run_zygote(passed_fds: list[int]) -> int:
    """Main of ``python -m shoal zygote``."""
    import shoal.cli.main
    import shoal.cluster.run
    import shoal.comm.tcp  # the transport and its handshake: every child listens and connects
    import shoal.scheduler.server
    import shoal.security
    import shoal.worker.server  # noqa: F401

    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    _warm_up()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed goes to stderr; stdout (dup'ed above) is for events
    managed = set(passed_fds)
    children: dict[int, int] = {}  # pid -> write end of its stdin pipe
    readiness: dict[int, int] = {}  # read end of a child's readiness pipe -> pid
    pending = b""
    # a child's exit wakes the loop (SIGCHLD writes to this pipe), so it is
    # reaped and reported at once rather than at the next poll
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = children.pop(pid, None)
            if w is not None and w >= 0:  # -1: closed already (we are stopping)
                os.close(w)
            emit({"event": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    while True:
        ready, _, _ = select.select([0, wake_r, *readiness], [], [], 1.0)
        for fd in ready:
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)  # what is left wakes the next select
                except BlockingIOError:
                    pass
            elif fd in readiness:
                pid = readiness.pop(fd)
                if os.read(fd, 16):
                    emit({"event": "ready", "pid": pid})
                os.close(fd)
        reap()
        if 0 not in ready:
            continue
        data = os.read(0, 65536)
        if not data:
            break  # the client is gone
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "spawn":
                argv = list(cmd["argv"])
                private = [out.fileno(), wake_r, wake_w, *readiness]
                rr = rw = -1
                if cmd.get("ready"):
                    rr, rw = os.pipe()
                    argv += ["--ready-fd", str(rw)]
                    private.append(rr)
                pid, w = _fork(argv, set(cmd.get("inherit", ())), managed, children, private,
                               cmd.get("env") or {})
                children[pid] = w
                if rw >= 0:
                    os.close(rw)
                    readiness[rr] = pid
                emit({"event": "started", "id": cmd["id"], "pid": pid})
            elif op == "close":
                if cmd["fd"] in managed:
                    managed.discard(cmd["fd"])
                    os.close(cmd["fd"])
            elif op == "stop":
                stdin_w = children.get(cmd["pid"])
                if stdin_w is not None:
                    os.close(stdin_w)
                    children[cmd["pid"]] = os.open(os.devnull, os.O_RDONLY)  # placeholder fd
    # stop every child: EOF on their stdin, then reap (bounded), then kill
    for pid, w in children.items():
        os.close(w)
        children[pid] = -1  # reap() must not close it again
    deadline = time.monotonic() + 5
    while children and time.monotonic() < deadline:
        reap()
        time.sleep(0.02)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while children:
        reap()
        time.sleep(0.01)
    # nothing here needs the interpreter's orderly teardown (modules, gc,
    # atexit): tens of ms that the client's close() would wait for
    out.flush()
    sys.stderr.flush()
    os._exit(0)


def _fork(argv: list[str], inherit: set[int], managed: set[int], children: dict[int, int],
          private: list[int], env: dict[str, str]) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(r)
        return pid, w
    # -- the child ---------------------------------------------------------
    code = 1
    try:
        signal.set_wakeup_fd(-1)  # the zygote's (its pipe is closed below)
        os.dup2(r, 0)
        os.close(r)
        os.close(w)
        for fd in [*children.values(), *private, *(fd for fd in managed if fd not in inherit)]:
            try:
                os.close(fd)
            except OSError:
                pass
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        if env:  # the client's configuration now, which may have changed since we started
            from shoal import config

            os.environ.update(env)
            config.refresh()
        from shoal.cli.main import main

        code = main([*argv, "--parent-watch"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


# -- the client side ------------------------------------------------------------


class _StopHandle:
    """What ``ForkedProcess.stdin`` is: closing it asks the child to stop."""

    def __init__(self, proc: ForkedProcess) -> None:
        self.proc = proc

    def close(self) -> None:
        self.proc.server.stop(self.proc.pid)


class ForkedProcess:
    """A child of the zygote, with the parts of ``Popen``'s interface the
    supervisor uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()
        self._ready = threading.Event()
        self.stdin = _StopHandle(self)

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()
        self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        """True once the worker registered with its scheduler; False if it
        exited first or the time ran out."""
        self._ready.wait(timeout)
        return self._ready.is_set() and self.returncode is None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class ForkServer:
    """Starts and talks to a zygote process."""

    def __init__(self, pass_fds: tuple[int, ...] = ()) -> None:
        cmd = shoal_command("zygote", "--fds", ",".join(map(str, pass_fds)))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     pass_fds=pass_fds, env=child_env(), close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._lock = threading.Lock()
        self._ids = iter(range(1, 1 << 30))
        self._started: dict[int, tuple[threading.Event, list[int]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._early_ready: set[int] = set()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        name="shoal-zygote-reader", daemon=True)
        self._reader.start()

    def _command(self, cmd: dict[str, Any]) -> None:
        with self._lock:
            self._stdin.write((json.dumps(cmd) + "\n").encode())
            self._stdin.flush()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            event = json.loads(line)
            if event["event"] == "started":
                waiter = self._started.get(event["id"])
                if waiter is not None:
                    waiter[1].append(event["pid"])
                    waiter[0].set()
            elif event["event"] == "ready":
                with self._lock:
                    child = self._children.get(event["pid"])
                    if child is None:
                        self._early_ready.add(event["pid"])
                if child is not None:
                    child._ready.set()
            elif event["event"] == "exited":
                with self._lock:
                    child = self._children.pop(event["pid"], None)
                    if child is None:
                        self._early_exits[event["pid"]] = event["code"]
                if child is not None:
                    child._set_exit(event["code"])
        # the zygote is gone: so are its children
        with self._lock:
            children, self._children = list(self._children.values()), {}
        for child in children:
            child._set_exit(-signal.SIGKILL)
        for event_, _ in self._started.values():
            event_.set()

    def spawn(self, argv: list[str], inherit: tuple[int, ...] = (), ready: bool = False,
              timeout: float = 60.0, env: dict[str, str] | None = None) -> ForkedProcess:
        """Fork ``python -m shoal <argv>`` (as ``shoal.cli.main`` would run it).
        With ``ready``, the child is a worker told to signal its registration;
        ``env``: variables to set in it (secrets go here, never in ``argv``)."""
        return self.started(self.request_spawn(argv, inherit, ready, env), timeout)

    def request_spawn(self, argv: list[str], inherit: tuple[int, ...] = (), ready: bool = False,
                      env: dict[str, str] | None = None) -> tuple[int, list[str]]:
        """Ask for a fork and return at once; ``started()`` waits for it.
        Several requests in a row are forked back to back, without a round
        trip to this process between them."""
        cid = next(self._ids)
        self._started[cid] = (threading.Event(), [])
        try:
            self._command({"op": "spawn", "id": cid, "argv": argv, "inherit": list(inherit),
                           "ready": ready, "env": {**_config_env(), **(env or {})}})
        except BaseException:
            self._started.pop(cid, None)
            raise
        return cid, argv

    def started(self, request: tuple[int, list[str]], timeout: float = 60.0) -> ForkedProcess:
        """The process a ``request_spawn`` asked for, once forked."""
        cid, argv = request
        waiter = self._started[cid]
        try:
            if not waiter[0].wait(timeout) or not waiter[1]:
                raise RuntimeError(f"the fork server did not start {argv[:1]} within {timeout} s")
        finally:
            self._started.pop(cid, None)
        pid = waiter[1][0]
        child = ForkedProcess(self, pid)
        with self._lock:
            self._children[pid] = child
            code = self._early_exits.pop(pid, None)
            was_ready = pid in self._early_ready
            self._early_ready.discard(pid)
        if was_ready:
            child._ready.set()
        if code is not None:
            child._set_exit(code)
        return child

    def close_fd(self, fd: int) -> None:
        self._command({"op": "close", "fd": fd})

    def stop(self, pid: int) -> None:
        try:
            self._command({"op": "stop", "pid": pid})
        except (BrokenPipeError, ValueError):
            pass

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every child and the zygote."""
        try:
            with self._lock:
                self._stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
