"""Results a caller waits on come straight from the worker (ResultPushed),
ahead of the scheduler's TaskDone, which still follows and stays the
authority.  Real scheduler and worker processes; the scheduler is paused
with SIGSTOP to show that the result did not come through it."""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import Client, LocalCluster


def inc(x: int) -> int:
    return x + 1


def wait_for_file(started: str, go: str, value: int) -> int:
    Path(started).touch()
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError("nobody created the go file")
        time.sleep(0.005)
    return value


def poll(predicate, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def one_worker() -> Iterator[tuple[LocalCluster, Client]]:
    with LocalCluster(n_workers=1, threads_per_worker=1, validate=True) as cluster, \
            Client(cluster, timeout=10) as client:
        yield cluster, client


def subscribed(client: Client) -> bool:
    return any(conn is not None for conn in client._subscriptions.values())


def test_a_waited_on_result_arrives_while_the_scheduler_is_paused(one_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster, client = one_worker
    assert client.submit(inc, 1).result(timeout=10) == 2  # waited on: the client subscribes
    poll(lambda: subscribed(client), "the subscription to the worker")
    started, go = tmp_path / "started", tmp_path / "go"
    fut = client.submit(wait_for_file, str(started), str(go), 41)
    poll(started.exists, "the task to start")
    scheduler = cluster._scheduler_proc.pid
    os.kill(scheduler, signal.SIGSTOP)
    try:
        go.touch()
        assert fut.result(timeout=10) == 41  # the scheduler cannot have said so
        assert client._pushed >= 1
    finally:
        os.kill(scheduler, signal.SIGCONT)
    # the scheduler catches up, and the key is released like any other
    assert client.submit(inc, 5).result(timeout=10) == 6
    key = fut.key
    del fut
    poll(lambda: key not in client.task_states(), "the pushed key to be released")


def test_results_agree_whichever_way_they_come(one_worker) -> None:  # type: ignore[no-untyped-def]
    _, client = one_worker
    client.submit(inc, 0).result(timeout=10)
    poll(lambda: subscribed(client), "the subscription to the worker")
    for i in range(200):
        assert client.submit(inc, i, pure=False).result(timeout=10) == i + 1
    assert client._pushed > 0
    # a large result is not pushed: it stays on the worker and is fetched
    big = client.submit(bytes, 10_000_000)
    assert len(big.result(timeout=30)) == 10_000_000
    # mapped and gathered results, errors and pure keys are unaffected
    assert client.gather(client.map(inc, range(100))) == list(range(1, 101))
    failing = client.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    a, b = client.submit(inc, 7), client.submit(inc, 7)
    assert a.key == b.key and a.result(timeout=10) == b.result(timeout=10) == 8
    del a, b, big, failing
    gc.collect()  # pytest.raises keeps the exception, and so the future, in a cycle
    poll(lambda: not client.task_states(), f"the scheduler to forget everything: {client.task_states()}")


def die_once(flag: str) -> int:
    if not os.path.exists(flag):
        Path(flag).touch()
        os._exit(1)
    return 42


@pytest.mark.timeout(90)
def test_a_subscribed_worker_that_dies_changes_nothing_but_the_path(tmp_path: Path) -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster, timeout=10) as client:
        client.submit(inc, 1, pure=False).result(timeout=10)
        poll(lambda: subscribed(client), "the subscription to the worker")
        # the task goes to the worker subscribed to, and kills it; it runs
        # again on another worker
        subscribed_to = {w for w, conn in client._subscriptions.items() if conn is not None}
        assert client.submit(die_once, str(tmp_path / "flag"), workers=sorted(subscribed_to),
                             allow_other_workers=True).result(timeout=30) == 42
        client.wait_for_workers(2, timeout=30)  # the dead one was restarted
        assert not subscribed_to & set(client.scheduler_info()["workers"])  # it was that one
        pushed = client._pushed
        for i in range(50):  # and lone tasks still come back, pushed or not
            assert client.submit(inc, i, pure=False).result(timeout=10) == i + 1
        assert client._pushed > pushed


def test_an_asynchronous_client_gets_pushed_results_too() -> None:
    import asyncio

    async def main() -> None:
        async with Client(asynchronous=True, n_workers=1, threads_per_worker=1) as client:
            assert await client.submit(inc, 0) == 1
            deadline = time.monotonic() + 10
            while not subscribed(client):
                assert time.monotonic() < deadline, "no subscription"
                await asyncio.sleep(0.01)
            for i in range(50):
                assert await client.submit(inc, i, pure=False) == i + 1
            assert client._pushed > 0

    asyncio.run(main())


def test_the_scheduler_agrees_with_a_pushed_result_at_once(one_worker) -> None:  # type: ignore[no-untyped-def]
    """A result can reach the caller before the scheduler hears of it; what
    the client asks the scheduler next must still see the task as done."""
    _cluster, client = one_worker
    assert client.submit(inc, 0).result(timeout=10) == 1
    poll(lambda: subscribed(client), "the subscription to the worker")
    [worker] = client.scheduler_info()["workers"]
    pushed_before = client._pushed
    for i in range(100):
        fut = client.submit(inc, i, pure=False)
        assert fut.result(timeout=10) == i + 1
        assert client.who_has([fut])[fut.key] == [worker]
        assert client.task_states([fut])[fut.key] == "memory"
    assert client._pushed > pushed_before  # the pushed path was taken
