"""Queue, Lock, Event and Variable shared by clients and tasks."""

from __future__ import annotations

import gc
import time

import pytest

from shoal import Client, Event, Future, Lock, Queue, Variable

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
    deadline = time.monotonic() + 10
    while key in client.task_states() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert key not in client.task_states()


def test_variable_with_data_and_waiting_get(client: Client) -> None:
    v = Variable("shared-setting")
    reader = client.submit(lambda: Variable("shared-setting").get(timeout=20), pure=False)
    time.sleep(0.1)
    v.set({"threshold": 3})
    assert reader.result(timeout=20) == {"threshold": 3}
    with pytest.raises(TimeoutError):
        Variable("never-set").get(timeout=0.1)


def wait_for(e: Event) -> bool:
    return e.wait(timeout=20)


def test_event(client: Client) -> None:
    e = Event()
    assert not e.is_set()
    assert e.wait(timeout=0.05) is False
    waiter = client.submit(wait_for, e, pure=False)
    e.set()
    assert waiter.result(timeout=20) is True and e.is_set()
    e.clear()
    assert not e.is_set()


def critical(lock: Lock, path: str) -> None:
    with lock:
        with open(path, "a") as f:
            f.write("<")
        time.sleep(0.02)
        with open(path, "a") as f:
            f.write(">")


def test_lock_gives_mutual_exclusion_across_workers(client: Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lock = Lock("files")
    path = str(tmp_path / "log")
    client.gather([client.submit(critical, lock, path, pure=False) for _ in range(6)])
    with open(path) as f:
        text = f.read()
    assert text == "<>" * 6  # never two inside at once
    assert lock.acquire(blocking=False)
    assert not Lock("files").acquire(blocking=False)
    with pytest.raises(Exception, match="not held"):
        Lock("files").release()
    lock.release()


def test_a_lock_is_released_when_its_client_goes(cluster) -> None:  # type: ignore[no-untyped-def]
    with Client(cluster, set_as_default=False) as other:
        assert Lock("orphan", client=other).acquire()
    with Client(cluster) as c:
        assert Lock("orphan", client=c).acquire(timeout=5)
