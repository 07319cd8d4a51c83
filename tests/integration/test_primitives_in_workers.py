"""Coordination objects made or used where no client was given: inside tasks,
actor methods (sync ones on the actor thread, async ones on the worker's
loop), threads that tasks start, before a client exists, and unpickled where
there is no client at all.  Each of these raised "No clients found"."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest

from shoal import (
    Client,
    Event,
    Lock,
    MultiLock,
    Queue,
    Semaphore,
    Variable,
    get_client,
    get_worker,
)

pytestmark = pytest.mark.timeout(60)


def use_everything(tag: str) -> dict[str, Any]:
    """Each kind of object, made here by name, with no client passed."""
    Queue(f"{tag}-q").put(f"{tag}-item")
    Variable(f"{tag}-v").set(f"{tag}-value")
    Event(f"{tag}-e").set()
    with Lock(f"{tag}-lock") as lock:
        locked = lock.locked()
    with Semaphore(max_leases=2, name=f"{tag}-sem") as sem:
        value = sem.get_value()
    with MultiLock([f"{tag}-m1", f"{tag}-m2"]) as ml:
        multi = ml.locked()
    return {"locked": locked, "value": value, "multi": multi}


def check_everything(tag: str, answer: dict[str, Any]) -> None:
    assert answer == {"locked": True, "value": 1, "multi": True}
    assert Queue(f"{tag}-q").get(timeout=10) == f"{tag}-item"
    assert Variable(f"{tag}-v").get(timeout=10) == f"{tag}-value"
    assert Event(f"{tag}-e").is_set()
    assert not Lock(f"{tag}-lock").locked()


def test_inside_a_task(client: Client) -> None:
    check_everything("task", client.submit(use_everything, "task", pure=False).result(timeout=20))


def in_a_thread(tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out.update(use_everything(tag))
        except Exception as e:  # carried back to the test
            out["error"] = repr(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


def test_in_a_thread_a_task_started(client: Client) -> None:
    check_everything("thread", client.submit(in_a_thread, "thread", pure=False).result(timeout=20))


class Coordinator:
    """Uses coordination objects from its methods, with no client given."""

    def sync_method(self, tag: str) -> dict[str, Any]:
        answer = use_everything(tag)
        answer["worker"] = get_worker().address
        return answer

    def passed_in(self, q: Queue, lock: Lock, futures: list[Any]) -> int:
        with lock:
            q.put(sum(f.result() for f in futures))  # futures unpickled on the actor thread
        return 1

    async def async_method(self, tag: str) -> dict[str, Any]:
        q = await Queue(f"{tag}-q")
        await q.put(f"{tag}-item")
        await Variable(f"{tag}-v").set(f"{tag}-value")
        event = await Event(f"{tag}-e")
        await event.set()
        async with Lock(f"{tag}-lock") as lock:
            locked = await lock.locked()
        async with Semaphore(max_leases=2, name=f"{tag}-sem") as sem:
            value = await sem.get_value()
        async with MultiLock([f"{tag}-m1", f"{tag}-m2"]) as ml:
            multi = ml.locked()
        assert get_client() is get_worker().get_client()
        return {"locked": locked, "value": value, "multi": multi}


def test_inside_actor_methods(client: Client) -> None:
    actor = client.submit(Coordinator, actor=True).result(timeout=20)
    answer = actor.sync_method("actor").result(timeout=20)
    assert answer.pop("worker") in client.scheduler_info()["workers"]
    check_everything("actor", answer)
    check_everything("async-actor", actor.async_method("async-actor").result(timeout=20))
    q = Queue()
    futures = client.map(lambda x: x * 10, [1, 2, 3])
    assert actor.passed_in(q, Lock(), futures).result(timeout=20) == 1
    assert q.get(timeout=10) == 60


def test_objects_made_before_any_client(cluster: Any) -> None:
    q = Queue("early", maxsize=1)
    lock = Lock("early-lock")
    event = Event("early-event")
    assert q.client is None and lock.client is None
    with Client(cluster) as c:
        assert q.client is c
        q.put(1)
        with pytest.raises(TimeoutError, match="full"):
            q.put(2, timeout=0.05)  # the maxsize given before the client existed holds
        assert q.get() == 1
        with lock:
            assert lock.locked()
        event.set()
        assert c.submit(lambda e: e.wait(timeout=10), event, pure=False).result(timeout=20)


def test_an_object_unpickled_where_there_is_no_client(cluster: Any) -> None:
    lock = pickle.loads(pickle.dumps(Lock("nowhere")))
    assert lock.client is None
    with pytest.raises(RuntimeError, match="No clients found"):
        lock.acquire()
    with Client(cluster):
        assert lock.acquire(timeout=5)
        lock.release()


def test_an_async_client_s_objects_in_async_code(cluster: Any) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            q = Queue("from-async")  # no client given: the default, asynchronous one
            assert q.client is c
            await q.put(c.submit(use_everything, "async-task", pure=False))
            answer = await (await q.get())
            assert answer == {"locked": True, "value": 1, "multi": True}

    asyncio.run(main())
