"""Queue, Event and Variable shared by clients and tasks (locks and
semaphores: test_locks.py; inside tasks and actors: test_primitives_in_workers.py)."""

from __future__ import annotations

import asyncio
import gc
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from shoal import Client, Event, Future, Queue, Variable

from ..conftest import poll_until

pytestmark = pytest.mark.timeout(60)


def produce(q: Queue, n: int) -> int:
    for i in range(n):
        q.put(i)
    return n


def consume(q: Queue, n: int) -> list[int]:
    return [q.get(timeout=20) for _ in range(n)]


def test_queue_between_tasks_and_client(client: Client) -> None:
    q = Queue()
    consumer = client.submit(consume, q, 5, pure=False)
    assert client.submit(produce, q, 5, pure=False).result(timeout=20) == 5
    assert consumer.result(timeout=20) == [0, 1, 2, 3, 4]
    for i in range(3):
        q.put(i * 10)
    assert q.qsize() == 3
    assert q.get(batch=True) == [0, 10, 20]
    with pytest.raises(TimeoutError, match="empty"):
        q.get(timeout=0.1)


def test_bounded_queue_blocks_puts(client: Client) -> None:
    q = Queue(maxsize=1, client=client)
    q.put("a")
    with pytest.raises(TimeoutError, match="full"):
        q.put("b", timeout=0.1)
    assert q.get() == "a"
    q.put("b", timeout=1)


def test_futures_through_queue_and_variable_keep_their_data(client: Client) -> None:
    q, v = Queue(), Variable()
    f = client.submit(sum, [1, 2, 3], pure=False)
    key = f.key
    q.put(f)
    v.set(f)
    del f
    gc.collect()
    got = q.get(timeout=10)
    assert isinstance(got, Future) and got.result(timeout=10) == 6
    del got
    gc.collect()
    assert v.get(timeout=10).result(timeout=10) == 6  # still held by the variable
    v.delete()
    gc.collect()
    assert poll_until(lambda: key not in client.task_states())


def parked(kind: str, name: str) -> Callable[[], bool]:
    """Whether a request waits on the scheduler for ``kind`` ("variable" or
    "event") ``name``."""
    def check(dask_scheduler: Any) -> int:
        waiters = getattr(dask_scheduler.coordination, f"{kind}_waiters").get(name)
        return 0 if waiters is None else sum(not f.done() for f in waiters.futures)

    return check


def test_variable_with_data_and_waiting_get(client: Client) -> None:
    v = Variable("shared-setting")
    reader = client.submit(lambda: Variable("shared-setting").get(timeout=20), pure=False)
    assert poll_until(lambda: client.run_on_scheduler(parked("variable", "shared-setting")))
    v.set({"threshold": 3}, timeout="5s")
    assert reader.result(timeout=20) == {"threshold": 3}
    with pytest.raises(TimeoutError):
        Variable("never-set").get(timeout="100ms")


def test_cancelled_futures_cannot_be_shared(client: Client) -> None:
    gate = Event()
    f = client.submit(gate.wait, 20, pure=False)
    f.cancel()
    with pytest.raises(ValueError, match="cancelled"):
        Queue().put(f)
    with pytest.raises(ValueError, match="cancelled"):
        Variable().set(f)
    gate.set()  # the task, if it started, ends


def wait_for(e: Event) -> bool:
    return e.wait(timeout=20)


def test_event(client: Client) -> None:
    e = Event()
    assert not e.is_set()
    assert e.wait(timeout=0.05) is False
    waiter = client.submit(wait_for, e, pure=False)
    assert poll_until(lambda: client.run_on_scheduler(parked("event", e.name)))
    assert e.set() is None
    assert waiter.result(timeout=20) is True and e.is_set()
    e.clear()
    assert not e.is_set()



def test_queue_close_deletes_the_queue_with_its_last_object(client: Client) -> None:
    """Every Queue object that used the queue counts (as in dask.distributed)."""
    a = Queue("closing")
    b = Queue("closing")
    held = client.submit(sum, [4, 5], pure=False)
    key = held.key
    a.put(held)
    del held
    a.close()  # b still uses it
    assert b.qsize() == 1
    b.close()
    assert poll_until(lambda: key not in client.task_states())  # its future was let go
    c = Queue("closing")
    assert c.qsize() == 0  # the name starts afresh
    c.close()


def test_a_queue_object_pickles_with_its_maxsize(client: Client) -> None:
    q = Queue(maxsize=2)
    copy = pickle.loads(pickle.dumps(q))
    assert (copy.name, copy.maxsize) == (q.name, 2)
    assert client.submit(lambda q: q.maxsize, q, pure=False).result(timeout=10) == 2


def test_the_keywords_dask_passes_to_sync(client: Client) -> None:
    q = Queue()
    assert q.put(1, callback_timeout=5) is None
    assert asyncio.run(_await(q.get(asynchronous=True))) == 1
    assert q.qsize(callback_timeout="5s") == 0
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['colour'\\]"):
        q.put(1, colour="red")
    with pytest.raises(ValueError, match="batch"):
        q.get(batch=-1)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def test_asynchronous_client_forms(cluster) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            q = await Queue("async-q", maxsize=1)
            await q.put(c.submit(sum, [1, 2]))
            with pytest.raises(TimeoutError, match="full"):
                await q.put("more", timeout=0.05)
            future = await q.get()
            assert await future == 3
            assert await q.qsize() == 0
            e = await Event("async-e")
            await e.set()
            assert await e.is_set() and await e.wait(timeout=1)
            await e.clear()
            v = Variable("async-v")
            await v.set("value", timeout="1s")
            assert await v.get() == "value"
            v.delete()
            with pytest.raises(TimeoutError):
                await v.get(timeout=0.05)

    asyncio.run(main())
