"""Actors: state on one worker, method calls straight to it; handles passed
around, and actors calling actors."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from shoal import Actor, ActorFuture, BaseActorFuture, Client, Event, Variable, get_worker

from ..conftest import poll_until

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
    future = client.submit(Counter, 10, actor=True)
    counter = future.result(timeout=10)
    assert isinstance(counter, Actor)
    assert counter.key == future.key and counter.client is client
    f = counter.increment()
    assert isinstance(f, ActorFuture) and isinstance(f, BaseActorFuture)
    assert f.result(timeout="10s") == 11 and f.done()
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
    assert poll_until(lambda: key not in client.task_states())


def test_async_actor_calls(cluster: Any) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            counter = await client.submit(Counter, 5, actor=True)
            assert await counter.increment() == 6
            assert await counter.n == 6  # attribute reads are awaited too
            call = counter.increment()
            with pytest.raises(RuntimeError, match="await"):
                call.result()  # would block the loop that delivers the answer
            assert await call == 7
            assert counter.client is client

    asyncio.run(main())


def call_all(handles: dict[str, list[Actor]], gate: Event) -> list[int]:
    assert gate.wait(timeout=20)
    return [h.increment().result() for h in handles["counters"]]


def test_handles_in_containers_are_dependencies_and_keep_their_actors(client: Client) -> None:
    a = client.submit(Counter, actor=True).result(timeout=10)
    b = client.submit(Counter, 100, actor=True).result(timeout=10)
    keys = [a.key, b.key]
    gate = Event()
    task = client.submit(call_all, {"counters": [a, b]}, gate, pure=False)
    del a, b
    gc.collect()  # the task, not yet running, still holds both actors
    gate.set()
    assert task.result(timeout=20) == [1, 101]
    del task
    assert poll_until(lambda: not set(keys) & set(client.task_states()))


def test_handles_travel_through_variables_and_results(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    v = Variable()
    v.set(counter)
    called = client.submit(lambda v: v.get(timeout=10).increment().result(), v, pure=False)
    assert called.result(timeout=20) == 1
    back = client.submit(lambda c: c, counter, pure=False).result(timeout=20)
    assert isinstance(back, Actor) and back.increment().result(timeout=10) == 2
    v.delete()


class Caller:
    """An actor that calls other actors from its methods."""

    def __init__(self, other: Actor | None = None) -> None:
        self.other = other

    def call(self, other: Actor, n: int) -> list[int]:
        return [other.increment().result() for _ in range(n)]

    def call_async_method(self, other: Actor) -> int:
        return other.aget().result()  # an async def method, run on the worker's loop

    def call_kept(self) -> int:
        assert self.other is not None
        return self.other.increment().result()

    def where(self) -> str:
        return get_worker().address

    async def call_async(self, other: Actor) -> int:
        with pytest.raises(RuntimeError, match="await"):
            other.increment().result()  # here the worker's loop delivers the answer
        await other.increment()
        return await other.n


def test_actors_calling_actors_on_the_same_and_another_worker(client: Client) -> None:
    first, second = sorted(client.scheduler_info()["workers"])
    caller = client.submit(Caller, workers=[first], actor=True).result(timeout=10)
    here = client.submit(Counter, workers=[first], actor=True).result(timeout=10)
    there = client.submit(Counter, workers=[second], actor=True).result(timeout=10)
    assert caller.where().result(timeout=10) == first
    # on the same worker the call runs in place: a message would wait for
    # the one actor thread, busy with the caller
    assert caller.call(here, 3).result(timeout=20) == [1, 2, 3]
    assert caller.call(there, 2).result(timeout=20) == [1, 2]
    assert caller.call_async_method(here).result(timeout=20) == 3
    assert caller.call_async_method(there).result(timeout=20) == 2
    assert caller.call_async(here).result(timeout=20) == 5
    assert caller.call_async(there).result(timeout=20) == 4


def test_a_handle_kept_by_another_actor_keeps_its_actor(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    key = counter.key
    keeper = client.submit(Caller, counter, actor=True).result(timeout=10)
    del counter
    gc.collect()
    assert keeper.call_kept().result(timeout=20) == 1
    assert key in client.task_states()
    del keeper
    gc.collect()
    assert poll_until(lambda: key not in client.task_states())
