"""Tasks that submit tasks: get_client, worker_client, secede/rejoin."""

from __future__ import annotations

import pytest

from shoal import Client, get_client, get_worker, rejoin, secede, worker_client

pytestmark = pytest.mark.timeout(60)


def fib(n: int) -> int:
    if n < 2:
        return n
    with worker_client() as client:
        a, b = client.map(fib, [n - 1, n - 2])
        return int(a.result() + b.result())


def split_sum(data: list[int]) -> int:
    if len(data) <= 2:
        return sum(data)
    client = get_client()
    mid = len(data) // 2
    left, right = client.submit(split_sum, data[:mid]), client.submit(split_sum, data[mid:])
    secede()
    total = left.result() + right.result()
    rejoin()
    return total


def test_recursive_tasks_with_one_thread_per_worker_do_not_deadlock(client: Client) -> None:
    """Each level waits on the next: without secede every thread would be
    taken by a waiting task and the tasks they wait for would never run."""
    assert client.submit(fib, 12).result(timeout=60) == 144
    assert client.submit(split_sum, list(range(64))).result(timeout=60) == sum(range(64))


def test_get_worker_inside_a_task(client: Client) -> None:
    names = {info["name"] for info in client.scheduler_info()["workers"].values()}
    assert client.submit(lambda: get_worker().name, pure=False).result(timeout=10) in names
    with pytest.raises(ValueError, match="outside of a task"):
        get_worker()


def same_client_by_address(address: str) -> bool:
    return get_client(address) is get_client() is get_worker().get_client()


def test_get_client_by_address(client: Client) -> None:
    assert get_client(client.scheduler_address) is client
    assert get_client(timeout="5s") is client
    assert client.submit(same_client_by_address, client.scheduler_address, pure=False).result(timeout=20)
