"""Actors: state on one worker, method calls straight to it."""

from __future__ import annotations

import gc
import time

import pytest

from shoal import Client
from shoal.client.actor import Actor, ActorFuture

pytestmark = pytest.mark.timeout(60)


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def fail(self) -> None:
        raise ValueError("counter failed")

    async def aget(self) -> int:
        return self.n


def test_actor_methods_attributes_and_errors(client: Client) -> None:
    counter = client.submit(Counter, 10, actor=True).result(timeout=10)
    assert isinstance(counter, Actor)
    f = counter.increment()
    assert isinstance(f, ActorFuture)
    assert f.result(timeout=10) == 11
    assert counter.increment(by=5).result(timeout=10) == 16
    assert counter.n == 16
    assert counter.aget().result(timeout=10) == 16
    with pytest.raises(ValueError, match="counter failed"):
        counter.fail().result(timeout=10)
    futures = [counter.increment() for _ in range(50)]
    assert sorted(f.result(timeout=10) for f in futures) == list(range(17, 67))


def test_actor_passed_to_a_task(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    f = client.submit(lambda c: c.increment(by=3).result(), counter, pure=False)
    assert f.result(timeout=10) == 3
    assert counter.n == 3


def test_actor_lives_while_a_proxy_exists_and_goes_away_after(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    key = counter._key
    gc.collect()
    assert counter.increment().result(timeout=10) == 1  # the proxy kept it alive
    del counter
    gc.collect()
    deadline = time.monotonic() + 10
    while key in client.task_states() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert key not in client.task_states()


def test_async_actor_calls() -> None:
    import asyncio

    async def main() -> None:
        async with Client(asynchronous=True, n_workers=1, processes=False) as client:
            counter = await client.submit(Counter, actor=True)
            assert await counter.increment() == 1
            assert await counter.increment() == 2

    asyncio.run(main())
