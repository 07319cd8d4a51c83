"""``close()`` and ``shutdown()`` end the cluster's processes whatever the
cluster holds: asked to stop, every process exits on its own, without being
terminated or killed (``stop_processes`` logs a warning when it has to)."""

from __future__ import annotations

import logging
import os
import time

import psutil
import pytest

from shoal import Client, LocalCluster

pytestmark = pytest.mark.timeout(180)


def inc(x: int) -> int:
    return x + 1


def noop(x: int) -> int:
    return x


def _forced_stops(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "shoal.nanny" and "did not exit" in r.getMessage()]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_close_with_hundreds_of_thousands_of_keys_needs_no_signal(
        caplog: pytest.LogCaptureFixture) -> None:
    """The issue's case (a pure=False warm-up, then a fan-in of 30,000
    results) plus 200,000 tasks still pending: the scheduler used to fail
    its own close (a dict changed while it iterated over it) and sat until
    terminated, 7 s later."""
    caplog.set_level(logging.WARNING, logger="shoal.nanny")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with Client(n_workers=2, threads_per_worker=1) as client:
        client.gather(client.map(noop, range(200), pure=False))
        computed = client.map(noop, range(30_000))
        assert client.submit(sum, computed).result(timeout=120) == sum(range(30_000))
        pending = client.map(inc, range(200_000))
        assert len(pending) == 200_000
        children = {p.pid for p in me.children(recursive=True)} - before
        assert len(children) == 4  # fork server, scheduler, two workers
    assert _forced_stops(caplog) == []
    assert all(_gone(pid) for pid in children)


def test_shutdown_with_many_keys_lets_every_process_exit_on_its_own(
        caplog: pytest.LogCaptureFixture) -> None:
    """``shutdown()`` on a cluster the client does not own: the scheduler
    and the workers exit by themselves (nobody stops them), and closing the
    cluster afterwards finds nothing to force."""
    caplog.set_level(logging.WARNING, logger="shoal.nanny")
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        client = Client(cluster)
        held = client.map(noop, range(50_000))
        assert client.submit(sum, held).result(timeout=120) == sum(range(50_000))
        pending = client.map(inc, range(100_000))
        assert len(pending) == 100_000
        pids = [client.run_on_scheduler(os.getpid)]
        pids += [w["pid"] for w in client.scheduler_info()["workers"].values()]
        client.shutdown()
        assert client.status == "closed"
        deadline = time.monotonic() + 60
        while not all(_gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "the cluster's processes did not exit after shutdown()"
            time.sleep(0.05)
    assert _forced_stops(caplog) == []
