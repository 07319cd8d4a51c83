"""Workers that die, stop answering, or kill themselves through a task: every
result stays right, nothing waits forever, the cluster comes back to size,
and the client hears why workers were restarted (docs/failures.md)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

import shoal
from shoal import Client, KilledWorker, LocalCluster

pytestmark = pytest.mark.timeout(120)

#: a result bigger than worker.inline-result-bytes: the scheduler keeps no
#: copy, so losing its worker means recomputing it from its lineage
PAD = 20_000


def make(x: int) -> tuple[int, bytes]:
    return x, b"\0" * PAD


def use(pair: tuple[int, bytes], x: int) -> int:
    time.sleep(0.002)
    assert len(pair[1]) == PAD
    return pair[0] * 2 + x


def slow_make(x: int) -> tuple[int, bytes]:
    time.sleep(0.02)
    return make(x)


def always_kill() -> None:
    os._exit(3)


def _workers(client: Client) -> dict[str, dict]:  # type: ignore[type-arg]
    return client.scheduler_info()["workers"]  # type: ignore[no-any-return]


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _holder_of_most(client: Client, futures: list) -> str:  # type: ignore[type-arg]
    counts: dict[str, int] = {}
    for holders in client.who_has(futures).values():
        for w in holders:
            counts[w] = counts.get(w, 0) + 1
    return max(counts, key=counts.__getitem__)


@pytest.fixture
def quick_ttl_cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """Two one-thread workers; a silent worker (or scheduler) is given up
    after 2 s instead of 15."""
    with shoal.config.set({"scheduler.worker-ttl": "2s", "worker.scheduler-ttl": "2s"}), \
            LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        yield cluster, client


def test_sigkill_during_a_map_with_dependencies(quick_ttl_cluster) -> None:  # type: ignore[no-untyped-def]
    """1,000 tasks whose inputs live on the workers; one worker is killed
    half-way: every result is right, lost inputs are recomputed, and the
    nanny brings the cluster back to two workers."""
    _, client = quick_ttl_cluster
    n = 500
    pairs = client.map(make, range(n))
    client.gather(pairs)
    victim = _holder_of_most(client, pairs)
    pid = _workers(client)[victim]["pid"]
    outs = client.map(use, pairs, range(n))
    _wait(lambda: sum(f.done() for f in outs) >= n // 10, 60, "a tenth of the map")
    os.kill(pid, signal.SIGKILL)
    assert client.gather(outs) == [x * 3 for x in range(n)]
    _wait(lambda: len(_workers(client)) == 2 and victim not in _workers(client), 60,
          "the nanny to replace the killed worker")
    restarts = [msg for _, msg in client.get_events("worker-restarted")]
    assert any("signal 9 (SIGKILL)" in msg["reason"] for msg in restarts), restarts


def test_a_stopped_worker_is_removed_and_replaced(quick_ttl_cluster) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP for longer than scheduler.worker-ttl during a map: the
    scheduler gives the worker up and recomputes what it held; after
    SIGCONT the old process finds its connection closed and leaves, and a
    fresh worker registers in its place."""
    _, client = quick_ttl_cluster
    n = 300
    pairs = client.map(slow_make, range(n))
    _wait(lambda: sum(f.done() for f in pairs) >= 20, 60, "the first results")
    finished = [f for f in pairs if f.done()]
    client.gather(finished)  # the client has a connection to both workers now
    victim = _holder_of_most(client, finished)
    pid = _workers(client)[victim]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        outs = client.map(use, pairs, range(n))
        _wait(lambda: victim not in _workers(client), 30, "the stopped worker's removal")
        # everything finishes on the one worker left, while the other sleeps;
        # results it held are fetched from where they were recomputed
        assert client.gather(outs) == [x * 3 for x in range(n)]
        assert [p[0] for p in client.gather(pairs)] == list(range(n))
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
          30, "the stale worker process to leave")
    _wait(lambda: len(_workers(client)) == 2, 60, "a fresh worker")
    assert victim not in _workers(client)
    restarts = [msg for _, msg in client.get_events("worker-restarted")]
    assert any("lost its scheduler" in msg["reason"] for msg in restarts), restarts
    # the cluster works as before, on both workers
    more = client.map(use, client.map(make, range(50), pure=False), range(50))
    assert client.gather(more) == [x * 3 for x in range(50)]


def test_killed_worker_names_the_task_and_the_last_worker(
        quick_ttl_cluster, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """A task that kills every worker it runs on fails after
    scheduler.allowed-failures + 1 deaths with KilledWorker (dask's
    attributes), and the nanny's reason for each restart reaches the
    scheduler's events and the client's log."""
    caplog.set_level(logging.WARNING, logger="shoal.client")
    _, client = quick_ttl_cluster
    f = client.submit(always_kill)
    with pytest.raises(KilledWorker, match="always_kill") as info:
        f.result(timeout=90)
    err = info.value
    assert err.task == f.key == err.key
    assert err.last_worker.startswith("tcp://")
    assert err.allowed_failures == shoal.config.get("scheduler.allowed-failures")
    _wait(lambda: sum("exit code 3" in m["reason"]
                      for _, m in client.get_events("worker-restarted")) >= 4, 60,
          "four restarts reported")
    _wait(lambda: any("restarted by its nanny: exit code 3" in r.getMessage()
                      for r in caplog.records if r.name == "shoal.client"), 30,
          "the restart in the client's log")
    client.wait_for_workers(2, timeout=60)
    assert client.submit(use, make(1), 1).result(timeout=30) == 3


def test_a_gather_from_a_worker_that_stops_answering_does_not_hang(quick_ttl_cluster) -> None:  # type: ignore[no-untyped-def]
    """The client asks a worker for a result over an open connection just
    as the worker stops: once the scheduler gives the worker up, the
    request fails, the client asks where the result is now, and gets it
    recomputed elsewhere (instead of waiting on that connection forever)."""
    _, client = quick_ttl_cluster
    big = client.submit(make, 1, pure=False)
    assert client.gather(big)[0] == 1  # the connection to its worker is open now
    victim = client.who_has([big])[big.key][0]
    pid = _workers(client)[victim]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert client.gather(big)[0] == 1
        assert victim not in _workers(client)
    finally:
        os.kill(pid, signal.SIGCONT)
