"""Starting scheduler and worker processes, and watching over workers.

``Supervisor`` plays the nanny's part for any number of worker processes:
it restarts a worker that died unexpectedly and kills one whose memory grows
past the ``worker.memory.terminate`` fraction (0.95) of its limit (memory as
``worker/memory_manager.process_memory`` counts it: shared-memory values
included).  One supervisor watches all the workers of a ``LocalCluster``
(or of one ``shoal worker --nworkers N`` command), rather than one nanny
process per worker: the same safety at a fraction of the processes, which
matters for start-up time on small machines.

Children are tied to their parent through their stdin: when the parent goes
away (even by ``kill -9``) the pipe closes and the child shuts itself down.

How a worker's exit code reads here:

* 0: it left for good (the scheduler closed it, retired it, or went away):
  it is not started again;
* ``RESTART_EXIT_CODE``: the scheduler asked for a fresh worker
  (``client.restart``, ``client.restart_workers``): started again at once,
  and not counted as a death;
* anything else: it died; started again unless it died too often.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from shoal.cluster.zygote import child_env, shoal_command

logger = logging.getLogger("shoal.nanny")

#: a worker process exiting with this code asks to be started again (the
#: scheduler asked for a fresh worker, ``client.restart``, or its lifetime
#: ended with ``lifetime_restart``): not a death, not counted (EX_TEMPFAIL
#: in sysexits.h, "try again"; no Python error exits with it)
RESTART_EXIT_CODE = 75
#: a worker process exiting with this code lost its scheduler (the
#: connection closed, or it stopped answering: shoal/worker/liveness.py);
#: what it held is stale, so a fresh worker is started in its place, which
#: registers as new.  Not counted as a death (EX_PROTOCOL, "remote error")
LOST_SCHEDULER_EXIT_CODE = 76


def spawn(args: list[str], pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Start ``python -m shoal <args>`` tied to this process by its stdin
    (``env``: variables to set in it, on top of ours)."""
    cmd = shoal_command(*args, "--parent-watch")
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        pass_fds=pass_fds,
        env={**child_env(), **(env or {})},
        close_fds=True,
    )


def stop_processes(procs: list[Any], timeout: float | None = None) -> list[Any]:
    """Ask politely (close stdin), then terminate, then kill; always reap.
    ``timeout``: how long they have to exit when asked (default: the setting
    ``admin.process-exit-timeout``).
    Returns the processes that had to be terminated or killed (each also
    logged as a warning: a process that does not exit when asked is a bug)."""
    for p in procs:
        if p.poll() is None and p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass
    if timeout is None:
        from shoal import config

        timeout = config.duration("admin.process-exit-timeout") or 0.0
    deadline = time.monotonic() + timeout
    forced = []
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("process %s did not exit within %.1f s of being asked: terminating it",
                           p.pid, timeout)
            forced.append(p)
            p.terminate()
    for p in procs:
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            logger.warning("process %s did not exit after SIGTERM: killing it", p.pid)
            p.kill()
            p.wait()
        if p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass
    return forced


def death_reason(code: int) -> str:
    """Why a worker process ended, from its exit code (negative: the signal
    that killed it; 128 + N: it closed on signal N)."""
    if code == LOST_SCHEDULER_EXIT_CODE:
        return "it lost its scheduler (the connection closed, or no heartbeat came)"
    number = -code if code < 0 else code - 128 if 128 < code < 160 else 0
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        verb = "killed" if code < 0 else "ended"
        return f"{verb} by signal {number} ({name})"
    return f"exit code {code}"


class WorkerProcess:
    __slots__ = ("args", "deaths", "kill_reason", "memory_limit", "name", "proc")

    def __init__(self, name: str, args: list[str], memory_limit: int) -> None:
        self.name = name
        self.args = args
        self.memory_limit = memory_limit
        self.proc: Any = None  # a Popen, or a zygote.ForkedProcess
        self.deaths: list[float] = []
        self.kill_reason = ""  # why the nanny itself killed it (its memory)


class Supervisor:
    """Starts worker processes and keeps them alive until ``stop()``."""

    def __init__(self, poll_interval: float | None = None, memory_interval: float | None = None,
                 spawner: Callable[[list[str], bool], Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``spawner(args, ready)`` starts a worker process (default: a new
        interpreter, with ``env`` added to its environment); ``ready`` asks
        it to signal its registration."""
        from shoal import config

        self.spawner = spawner
        self.env = env
        self.workers: dict[str, WorkerProcess] = {}
        self.poll_interval = poll_interval or config.duration("nanny.poll-interval") or 0.1
        self.memory_interval = memory_interval or config.duration("nanny.memory-check-interval") or 0.5
        # a worker that dies more than max_restarts times within restart_window stays dead
        self.max_restarts = int(config.get("nanny.max-restarts"))
        self.restart_window = config.duration("nanny.restart-window") or 60.0
        from shoal.worker.memory import fraction

        # past this fraction of its memory limit a worker is killed (None: never)
        self.terminate_fraction = fraction("terminate", config.get("worker.memory.terminate"))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, name: str, args: list[str], memory_limit: int = 0, ready_fd: int | None = None
            ) -> WorkerProcess:
        """Start a worker process; ``ready_fd`` (first start only) is a pipe it
        writes a byte to once registered."""
        if self.spawner is not None:
            proc = self.spawner(args, True)
        elif ready_fd is None:
            proc = spawn(args, env=self.env)
        else:
            proc = spawn([*args, "--ready-fd", str(ready_fd)], pass_fds=(ready_fd,), env=self.env)
        return self.adopt(name, args, memory_limit, proc)

    def adopt(self, name: str, args: list[str], memory_limit: int, proc: Any) -> WorkerProcess:
        """Watch a worker process started elsewhere (restarts use the spawner)."""
        wp = WorkerProcess(name, args, memory_limit)
        wp.proc = proc
        with self._lock:
            self.workers[name] = wp
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="shoal-nanny", daemon=True)
            self._thread.start()
        return wp

    def remove(self, name: str) -> None:
        with self._lock:
            wp = self.workers.pop(name, None)
        if wp is not None and wp.proc is not None:
            stop_processes([wp.proc])

    def _watch(self) -> None:
        last_memory_check = 0.0
        while not self._stop.wait(self.poll_interval):
            now = time.monotonic()
            check_memory = now - last_memory_check >= self.memory_interval
            if check_memory:
                last_memory_check = now
            with self._lock:
                workers = list(self.workers.values())
            for wp in workers:
                if self._stop.is_set():
                    return
                proc = wp.proc
                if proc is None:
                    continue
                code = proc.poll()
                if code is None:
                    if check_memory and wp.memory_limit and self.terminate_fraction:
                        self._check_memory(wp)
                    continue
                if code == 0:
                    # a clean exit: the scheduler closed or asked it to leave
                    with self._lock:
                        self.workers.pop(wp.name, None)
                    continue
                if code == RESTART_EXIT_CODE:
                    logger.info("worker %s asked to be restarted (a restart or its lifetime)", wp.name)
                    self._respawn(wp)
                    continue
                if code == LOST_SCHEDULER_EXIT_CODE:
                    logger.warning("worker %s lost its scheduler; starting a fresh one", wp.name)
                    self._respawn(wp, death_reason(code))
                    continue
                self._restart(wp, code, now)

    def _check_memory(self, wp: WorkerProcess) -> None:
        from shoal.worker.memory_manager import process_memory

        try:
            assert wp.proc is not None
            memory = process_memory(wp.proc.pid)
        except Exception:
            return
        assert self.terminate_fraction is not None
        if memory > wp.memory_limit * self.terminate_fraction:
            logger.warning(
                "worker %s uses %.0f MB, past %.0f%% of its memory limit of %.0f MB: restarting it",
                wp.name, memory / 1e6, 100 * self.terminate_fraction, wp.memory_limit / 1e6,
            )
            assert wp.proc is not None
            wp.kill_reason = (f"memory: it used {memory / 1e6:.0f} MB, past "
                              f"{100 * self.terminate_fraction:.0f}% of its limit of "
                              f"{wp.memory_limit / 1e6:.0f} MB")
            wp.proc.kill()

    def _restart(self, wp: WorkerProcess, code: int, now: float) -> None:
        reason, wp.kill_reason = wp.kill_reason or death_reason(code), ""
        wp.deaths = [t for t in wp.deaths if now - t < self.restart_window] + [now]
        if len(wp.deaths) > self.max_restarts:
            logger.error("worker %s died %d times in %.0f s (%s); not restarting it",
                         wp.name, len(wp.deaths), self.restart_window, reason)
            with self._lock:
                self.workers.pop(wp.name, None)
            return
        logger.warning("worker %s died (%s); restarting it", wp.name, reason)
        self._respawn(wp, reason)

    def _respawn(self, wp: WorkerProcess, reason: str = "") -> None:
        """Start ``wp`` again; ``reason`` (why the last one died) goes to the
        new worker, which tells the scheduler when it registers."""
        if wp.proc is not None and wp.proc.stdin is not None:
            try:
                wp.proc.stdin.close()
            except OSError:
                pass
        args = [*wp.args, "--restarted", reason] if reason else wp.args
        wp.proc = (self.spawner(args, False) if self.spawner is not None
                   else spawn(args, env=self.env))

    def processes(self) -> list[Any]:
        with self._lock:
            return [wp.proc for wp in self.workers.values() if wp.proc is not None]

    def halt(self) -> list[Any]:
        """Stop watching; return the worker processes (still running)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        with self._lock:
            procs = [wp.proc for wp in self.workers.values() if wp.proc is not None]
            self.workers.clear()
        return procs

    def stop(self, timeout: float | None = None) -> None:
        stop_processes(self.halt(), timeout)
