"""Bad input and failure: nothing hangs, errors say what happened, everyone
else keeps being served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from shoal import Client, KilledWorker, LocalCluster, RemoteException, SerializationError
from shoal.errors import CommClosedError

from ..conftest import shoal_threads

pytestmark = pytest.mark.timeout(90)


def inc(x: int) -> int:
    return x + 1


def return_lock() -> threading.Lock:
    return threading.Lock()


class BadException(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("cannot pickle me")


def raise_bad() -> None:
    raise BadException("original message")


def test_unpicklable_result_reports_an_error_instead_of_hanging(client: Client) -> None:
    f = client.submit(return_lock)
    with pytest.raises(SerializationError, match="lock"):
        f.result(timeout=10)
    # used on the worker that holds it, it is fine
    g = client.submit(lambda lock: type(lock).__name__, f)
    assert g.result(timeout=10) == "lock"


def test_unpicklable_exception_arrives_as_remote_exception(client: Client) -> None:
    f = client.submit(raise_bad)
    with pytest.raises(RemoteException, match="original message") as info:
        f.result(timeout=10)
    assert info.value.type_name == "BadException"
    assert "raise_bad" in info.value.traceback_text


def test_unpicklable_argument_fails_in_the_caller(client: Client) -> None:
    with pytest.raises(SerializationError):
        client.submit(inc, threading.Lock())


def test_connecting_to_a_closed_address_fails_within_the_timeout() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    before = set(shoal_threads())
    t = time.monotonic()
    with pytest.raises(OSError, match=str(port)):
        Client(f"tcp://127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - t < 5
    assert set(shoal_threads()) <= before


def test_garbage_on_the_scheduler_port_is_logged_and_closed(client: Client) -> None:
    host, port = client.scheduler_address.rsplit("://", 1)[1].rsplit(":", 1)
    for garbage in (b"\x00" * 64, b"SHL1" + b"\xff" * 60, os.urandom(4096)):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(garbage)
            s.settimeout(5)
            assert s.recv(100) == b""  # the scheduler hung up on us
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def kill_once(flag: str) -> int:
    """Kills its worker the first time it runs."""
    if not os.path.exists(flag):
        Path(flag).touch()
        os._exit(1)
    return 42


def always_kill() -> None:
    os._exit(1)


@pytest.fixture
def fragile_cluster():  # type: ignore[no-untyped-def]
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        yield cluster, client


def test_a_dead_worker_s_tasks_are_rescheduled(fragile_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, client = fragile_cluster
    assert client.submit(kill_once, str(tmp_path / "flag")).result(timeout=30) == 42
    client.wait_for_workers(2, timeout=30)  # the nanny restarted the dead one


def test_results_lost_with_a_worker_are_recomputed(fragile_cluster) -> None:  # type: ignore[no-untyped-def]
    _, client = fragile_cluster
    big = client.submit(lambda: list(range(100_000)), pure=False)  # too big to travel inline
    big.result(timeout=10)
    holder = client.who_has([big])[big.key][0]
    pid = client.scheduler_info()["workers"][holder]["pid"]
    psutil.Process(pid).kill()
    deadline = time.monotonic() + 30
    while holder in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.submit(len, big).result(timeout=30) == 100_000


class Suicidal:
    def ping(self) -> str:
        return "pong"

    def die(self) -> None:
        os._exit(1)


def test_an_actor_call_to_a_worker_that_dies_fails_instead_of_hanging(fragile_cluster) -> None:  # type: ignore[no-untyped-def]
    _, client = fragile_cluster
    actor = client.submit(Suicidal, actor=True).result(timeout=30)
    assert actor.ping().result(timeout=10) == "pong"  # the connection is open now
    call = actor.die()  # sent from this thread, straight onto the socket
    with pytest.raises(CommClosedError):
        call.result(timeout=30)
    with pytest.raises((CommClosedError, OSError)):  # nobody listens there any more
        actor.ping().result(timeout=30)
    client.wait_for_workers(2, timeout=30)


def test_a_task_that_keeps_killing_workers_raises_killed_worker(fragile_cluster) -> None:  # type: ignore[no-untyped-def]
    _, client = fragile_cluster
    f = client.submit(always_kill)
    with pytest.raises(KilledWorker, match="always_kill"):
        f.result(timeout=60)
    client.wait_for_workers(2, timeout=30)
    assert client.submit(inc, 5).result(timeout=30) == 6


def test_close_leaves_no_process_or_thread_behind() -> None:
    me = psutil.Process()
    threads_before = set(shoal_threads())
    before = {p.pid for p in me.children(recursive=True)}
    with Client(n_workers=2, threads_per_worker=1) as client:
        assert client.submit(inc, 1).result(timeout=10) == 2
        # a scheduler, two workers, and the fork server they came from
        assert len({p.pid for p in me.children(recursive=True)} - before) == 4
    assert {p.pid for p in me.children(recursive=True)} - before == set()
    assert set(shoal_threads()) <= threads_before


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed with SIGKILL leaves no orphaned scheduler or workers."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from shoal import LocalCluster\n"
        "c = LocalCluster(n_workers=2)\n"
        "print(' '.join(str(p.pid) for p in __import__('psutil').Process().children(recursive=True)),"
        " flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 4  # fork server, scheduler, two workers
    proc.kill()
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        if time.monotonic() > deadline:
            pytest.fail("children outlived their parent")
        time.sleep(0.05)
