"""Semaphore, Lock and MultiLock across clients and tasks: exclusion,
all-or-nothing, and what a holder's death, silence or disappearance gives back."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import Client, Event, Lock, MultiLock, Semaphore, config
from shoal.cluster.local import LocalCluster

from ..conftest import poll_until, token_env

pytestmark = pytest.mark.timeout(60)


def critical(lock: Lock, path: str) -> None:
    with lock:
        with open(path, "a") as f:
            f.write("<")
        with open(path, "a") as f:
            f.write(">")


def test_lock_gives_mutual_exclusion_across_workers(client: Client, tmp_path: Path) -> None:
    lock = Lock("files")
    path = str(tmp_path / "log")
    client.gather([client.submit(critical, lock, path, pure=False) for _ in range(6)])
    with open(path) as f:
        assert f.read() == "<>" * 6  # never two inside at once
    assert lock.acquire(blocking=False)
    assert lock.locked()
    assert not Lock("files").acquire(blocking=False)
    with pytest.raises(RuntimeError, match="Released too often"):
        Lock("files").release()  # another object holds no lease
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    assert lock.release() is True
    assert not lock.locked()


def take_when_free(sem: Semaphore, started: Event) -> tuple[bool, bool, int]:
    first = sem.acquire(timeout=0)  # the client holds every lease
    started.set()
    got = sem.acquire()  # waits for the client to give one back
    value = sem.get_value()
    sem.release()
    return first, got, value


def test_semaphore_leases_across_client_and_task(client: Client) -> None:
    sem = Semaphore(max_leases=2, name="pool")
    assert sem.acquire() and sem.acquire(timeout="1s")
    assert sem.get_value() == 2
    started = Event()
    task = client.submit(take_when_free, sem, started, pure=False)
    assert started.wait(timeout=20)
    assert sem.release() is True
    assert task.result(timeout=20) == (False, True, 2)
    sem.release()
    with pytest.raises(RuntimeError, match="Released too often"):
        sem.release()
    assert sem.get_value() == 0


def test_semaphore_checks_its_arguments_and_shares_names_with_locks(client: Client) -> None:
    with pytest.raises(ValueError, match="max_leases"):
        Semaphore(max_leases=0)
    with pytest.raises(NotImplementedError, match="scheduler_rpc"):
        Semaphore(scheduler_rpc=object())
    with pytest.raises(NotImplementedError, match="loop"):
        Lock("x", loop=object())
    lock = Lock("shared-name")
    lock.register()
    with pytest.raises(ValueError, match="Inconsistent max leases"):
        Semaphore(max_leases=2, name="shared-name").acquire()
    assert client.submit(lambda s: s.max_leases, Semaphore(3), pure=False).result(timeout=10) == 3


def waiting_for_lease(dask_scheduler: Any, name: str) -> int:
    """How many requests wait on the scheduler for a lease of ``name``."""
    for ext in dask_scheduler.extensions:
        waiters = getattr(ext, "free_waiters", {}).get(name)
        if waiters is not None:
            return sum(not f.done() for f in waiters.futures)
    return 0


def test_closing_a_semaphore_fails_its_waiters(client: Client) -> None:
    sem = Semaphore(name="to-close")
    assert sem.acquire()
    started = Event()
    waiter = client.submit(take_when_free, Semaphore(name="to-close"), started, pure=False)
    assert poll_until(lambda: client.run_on_scheduler(waiting_for_lease, name="to-close"))
    sem.close()
    with pytest.raises(RuntimeError, match="closed"):
        waiter.result(timeout=20)
    assert sem.get_value() == 0


def test_a_dropped_object_keeps_its_lease_as_in_dask(client: Client) -> None:
    """dask.distributed keeps refreshing the leases of an object nobody
    references; shoal keeps them too, until the connection goes."""
    assert Lock("dropped").acquire()
    gc.collect()
    assert Lock("dropped").locked()
    Lock("dropped").close()
    assert not Lock("dropped").locked()


def test_leases_and_multi_locks_end_with_their_client(cluster: Any) -> None:
    with Client(cluster, set_as_default=False) as other:
        assert Lock("orphan", client=other).acquire()
        assert Semaphore(name="orphan-sem", client=other).acquire()
        held = MultiLock(["orphan-a", "orphan-b"], client=other)
        assert held.acquire()
    with Client(cluster) as c:
        assert Lock("orphan", client=c).acquire(timeout=20)
        assert Semaphore(name="orphan-sem", client=c).acquire(timeout=20)
        assert MultiLock(["orphan-b"], client=c).acquire(timeout=20)


def hold_until_killed(sem: Semaphore, held: Event, flag: str) -> str:
    if os.path.exists(flag):
        return "ran again"  # rescheduled after its worker was killed: take nothing
    Path(flag).touch()
    assert sem.acquire()
    held.set()
    Event("never-set").wait()
    return "unreachable"


def test_a_lease_held_by_a_task_goes_back_when_its_worker_dies(client: Client, tmp_path: Path) -> None:
    sem = Semaphore(name="held-by-a-task")
    held = Event()
    task = client.submit(hold_until_killed, sem, held, str(tmp_path / "flag"), pure=False)
    assert held.wait(timeout=20)
    [worker] = [w for w, keys in client.processing().items() if task.key in keys]
    psutil.Process(client.scheduler_info()["workers"][worker]["pid"]).kill()
    assert sem.acquire(timeout=30)  # the worker's connection closed with it
    sem.release()
    assert task.result(timeout=30) == "ran again"
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it


HOLDER = """
import sys
from shoal import Client, Lock
client = Client(sys.argv[1], set_as_default=False, heartbeat_interval=0.1)
lock = Lock("silent-holder", client=client)
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.timeout(90)
def test_a_holder_that_stops_answering_loses_its_lease() -> None:
    """A holder frozen with SIGSTOP keeps its connection open but sends no
    heartbeat; after the lease timeout its lock is given to the next."""
    with config.set({"scheduler.locks.lease-timeout": "2s",
                     "scheduler.locks.lease-validation-interval": "100ms"}), \
            LocalCluster(n_workers=0) as cluster, Client(cluster), \
            subprocess.Popen([sys.executable, "-c", HOLDER, cluster.scheduler_address],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=token_env(cluster)) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            assert not Lock("silent-holder").acquire(blocking=False)
            os.kill(proc.pid, signal.SIGSTOP)
            assert Lock("silent-holder").acquire(timeout=30)
            assert proc.poll() is None  # not dead: silent
        finally:
            proc.kill()


# -- MultiLock ----------------------------------------------------------------------------


def test_multi_lock_is_all_or_nothing(client: Client) -> None:
    ab = MultiLock(["a", "b"])
    assert ab.acquire() and ab.locked()
    bc = MultiLock(["b", "c"])
    assert bc.acquire(blocking=False) is False and not bc.locked()
    c = MultiLock(["c"])
    assert c.acquire(timeout=0)  # bc did not keep c
    one = MultiLock(["a", "c", "d"])
    assert one.acquire(num_locks=1, timeout=5)  # d is free
    with pytest.raises(RuntimeError, match="acquired already"):
        one.acquire()
    for m in (ab, c, one):
        m.release()
    with pytest.raises(ValueError, match="not yet acquired"):
        ab.release()
    with pytest.raises(ValueError, match="at least one"):
        MultiLock().acquire()
    with pytest.raises(TypeError, match="list of lock names"):
        MultiLock("ab")  # type: ignore[arg-type]


def take_both(names: list[str], started: Event) -> bool:
    lock = MultiLock(names)
    started.set()
    with lock:
        return lock.locked()


def test_a_waiting_multi_lock_gets_its_locks_when_they_are_released(client: Client) -> None:
    held = MultiLock(["p", "q"])
    assert held.acquire()
    started = Event()
    task = client.submit(take_both, ["q", "p"], started, pure=False)
    assert started.wait(timeout=20)
    held.release()
    assert task.result(timeout=20) is True


def churn(first: str, second: str, rounds: int) -> int:
    for _ in range(rounds):
        with MultiLock([first, second]):
            pass
        with MultiLock([second, first]):
            pass
    return rounds


def test_multi_locks_in_opposite_orders_do_not_deadlock(client: Client) -> None:
    futures = [client.submit(churn, *(("x", "y") if i % 2 else ("y", "x")), 30, pure=False)
               for i in range(4)]
    with MultiLock(["y", "x"]):
        pass
    assert client.gather(futures) == [30] * 4


def test_async_with_and_await_forms(cluster: Any) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            lock = await Lock("async-lock", client=c)
            assert await lock.acquire()
            assert await lock.locked()
            assert await Lock("async-lock", client=c).acquire(blocking=False) is False
            assert await lock.release() is True
            async with Lock("async-lock", client=c) as held:
                assert await held.get_value() == 1
            sem = await Semaphore(2, "async-sem", client=c)
            async with sem:
                assert await sem.acquire(timeout=1)
                assert await sem.get_value() == 2
                await sem.release()
            async with MultiLock(["async-a", "async-b"], client=c) as ml:
                assert ml.locked()
            await sem.close()

    asyncio.run(main())


def test_sync_objects_work_in_async_code(client: Client) -> None:
    async def main() -> bool:
        async with Lock("sync-in-async") as lock, MultiLock(["sync-in-async"]):
            return bool(lock.locked())

    assert asyncio.run(main()) is True
    assert not Lock("sync-in-async").locked()
