"""A cluster formed by hand with the command line, as across machines."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from shoal import Client

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def inc(x: int) -> int:
    return x + 1


def stop(proc: subprocess.Popen) -> int:  # type: ignore[type-arg]
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args} did not stop on SIGTERM")


def test_scheduler_and_nanny_supervised_workers_from_the_command_line() -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "shoal", "scheduler", "--port", str(port)],
                                 stderr=subprocess.PIPE, text=True)
    workers = subprocess.Popen([sys.executable, "-m", "shoal", "worker", address, "--nworkers", "2",
                                "--nthreads", "2", "--name", "cli"])
    try:
        with Client(address, timeout=20) as client:
            client.wait_for_workers(2, timeout=30)
            info = client.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["cli-0", "cli-1"]
            assert all(w["nthreads"] == 2 for w in info.values())
            assert client.gather(client.map(inc, range(50))) == list(range(1, 51))

            # kill one worker process: its nanny starts a new one
            victim = next(iter(info.values()))["pid"]
            psutil.Process(victim).kill()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pids = {w["pid"] for w in client.scheduler_info()["workers"].values()}
                if len(pids) == 2 and victim not in pids:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the killed worker was not replaced")
            assert client.submit(inc, 1, pure=False).result(timeout=20) == 2
        children = psutil.Process(workers.pid).children()
        assert stop(workers) == 0
        psutil.wait_procs(children, timeout=10)
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        for p in (workers, scheduler):
            if p.poll() is None:
                stop(p)
        assert scheduler.stderr is not None
        log = scheduler.stderr.read()
        scheduler.stderr.close()
    assert f"scheduler listening at {address}" in log


def test_worker_for_an_unreachable_scheduler_exits_with_an_error() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "worker", f"tcp://127.0.0.1:{port}", "--no-nanny",
         "--connect-timeout", "1"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr
