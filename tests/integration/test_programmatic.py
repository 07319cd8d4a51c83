"""Servers started from Python, as dask's docs and tutorial start them:
``async with Scheduler() as s``, ``Worker(s.address)``, ``Nanny(s.address)``."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal import Client, Nanny, Scheduler, Worker, get_worker

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def scratch() -> str:
    return get_worker().local_directory  # type: ignore[no-any-return]


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not come true in time")
        await asyncio.sleep(0.02)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_scheduler_worker_client_as_in_the_dask_tutorial() -> None:
    async def main() -> None:
        async with Scheduler() as s:
            assert s.address.startswith("tcp://127.0.0.1:")  # this machine only, by default
            async with Worker(s.address) as w:
                assert w.address in s.workers
                assert w.local_directory is not None and os.path.isdir(w.local_directory)
                async with Client(s.address, asynchronous=True) as c:
                    assert await c.submit(inc, 1) == 2
                    assert await c.submit(scratch) == w.local_directory
                directory = w.local_directory
            assert w.status == "closed" and not os.path.exists(directory)
            await until(lambda: not s.workers)
        assert s.status == "closed"

    run(main)


def test_await_servers_with_dask_keywords() -> None:
    async def main() -> None:
        s = await Scheduler(port=0, allowed_failures=9)
        w = await Worker(s.address, nthreads=2, name="alice", resources="GPU=1",
                         memory_limit="1GB", metrics={"answer": lambda worker: 42},
                         startup_information={"born": lambda worker: "today"})
        try:
            async with Client(s.address, asynchronous=True) as c:
                info = (await c.scheduler_info())["workers"][w.address]
                assert (info["name"], info["nthreads"], info["memory_limit"]) == ("alice", 2, 10**9)
                assert info["resources"] == {"GPU": 1.0}
                assert info["metrics"]["answer"] == 42 and info["metrics"]["born"] == "today"
                assert info["local_directory"] == w.local_directory
                assert await c.run_on_scheduler(allowed) == 9
        finally:
            await w.close()
            await s.close()

    run(main)


def allowed(dask_scheduler: Any) -> int:
    return dask_scheduler.state.allowed_failures  # type: ignore[no-any-return]


def test_a_worker_finds_its_scheduler_in_a_scheduler_file(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "scheduler.json")

    async def main() -> None:
        async with Scheduler(scheduler_file=path) as s:
            assert os.stat(path).st_mode & 0o777 == 0o600
            async with Worker(scheduler_file=path, nthreads=1) as w:
                assert w.scheduler_address == s.address and w.address in s.workers
        assert not os.path.exists(path)  # removed with its scheduler

    run(main)


def test_a_worker_closes_after_its_lifetime() -> None:
    async def main() -> None:
        async with Scheduler() as s:
            mortal = await Worker(s.address, nthreads=1, lifetime="0.2s")
            phoenix = await Worker(s.address, nthreads=1, lifetime="0.2s", lifetime_stagger="0.1s",
                                   lifetime_restart=True)
            await asyncio.wait_for(asyncio.gather(mortal.finished(), phoenix.finished()), 20)
            assert mortal.exit_code == 0
            assert phoenix.exit_code != 0  # asks a nanny to start it again
            await until(lambda: not s.workers)

    run(main)


PRELOAD = '''
EVENTS = []
def dask_setup(server):
    EVENTS.append(("setup", type(server).__name__, server.address))
async def dask_teardown(server):
    EVENTS.append(("teardown", type(server).__name__))
'''


def test_preloads_run_when_servers_start_and_stop(tmp_path: pathlib.Path) -> None:
    import shoal

    path = tmp_path / "programmatic_preload.py"
    path.write_text(PRELOAD)

    async def main() -> None:
        async with Scheduler(preload=str(path)) as s:
            module = s.preloads.items[0].module
            with shoal.config.set({"worker.preload": [str(path)]}):  # the setting, as in dask
                async with Worker(s.address, nthreads=1) as w:
                    pass
            assert module.EVENTS[0] == ("setup", "Scheduler", s.address)
            worker_events = w.preloads.items[0].module.EVENTS
            assert worker_events == [("setup", "Worker", w.address), ("teardown", "Worker")]
        assert module.EVENTS[-1] == ("teardown", "Scheduler")

    run(main)


def test_a_scheduler_closes_itself_after_its_idle_timeout() -> None:
    async def main() -> None:
        s = await Scheduler(idle_timeout="0.2s")
        await asyncio.wait_for(s.finished(), 20)  # nobody asked it to
        assert s.status == "closed"

    run(main)


def test_blocked_handlers_refuse_their_requests() -> None:
    async def main() -> None:
        async with Scheduler(blocked_handlers=["run_on_scheduler"]) as s, \
                Client(s.address, asynchronous=True) as c:
            with pytest.raises(PermissionError, match="run_on_scheduler"):
                await c.run_on_scheduler(allowed)
            assert await c.scheduler_info()  # the others still answer

    run(main)


def test_plugins_given_to_the_constructors_are_set_up() -> None:
    from shoal import SchedulerPlugin, WorkerPlugin

    class Noting(WorkerPlugin):
        name = "noting"

        def __init__(self) -> None:
            self.workers: list[Any] = []

        def setup(self, worker: Any) -> None:
            self.workers.append(worker)

    class Counting(SchedulerPlugin):
        def __init__(self) -> None:
            self.joined: list[str] = []

        def add_worker(self, scheduler: Any, worker: str) -> None:
            self.joined.append(worker)

    async def main() -> None:
        counting, noting = Counting(), Noting()
        async with Scheduler(plugins=[counting]) as s, \
                Worker(s.address, nthreads=1, plugins=[noting]) as w:
            assert noting.workers == [w]  # the instance given, set up before joining
            await until(lambda: counting.joined == [w.address])

    run(main)


@pytest.mark.timeout(90)
def test_a_nanny_runs_a_worker_process_and_restarts_it() -> None:
    async def main() -> None:
        async with Scheduler() as s, Nanny(s.address, nthreads=1, name="kept") as n:
            assert n.worker_address in s.workers and n.address == n.worker_address
            first = n.pid
            assert first is not None and first != os.getpid()
            assert s.workers[n.worker_address].pid == first
            os.kill(first, signal.SIGKILL)
            await until(lambda: any(w.name == "kept" and w.pid != first for w in s.workers.values()))
            [record] = s.workers.values()
        await until(lambda: not _alive(record.pid))
        assert n.status == "closed"

    run(main)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(("make", "error", "name"), [
    (lambda: Worker("tcp://127.0.0.1:1", security="secret"), TypeError, "security"),
    (lambda: Worker("tcp://127.0.0.1:1", plugins=[object()]), TypeError, "WorkerPlugin"),
    (lambda: Worker("tcp://127.0.0.1:1", executor="offload"), NotImplementedError, "executor"),
    (lambda: Worker("tcp://127.0.0.1:1", protocol="ucx"), NotImplementedError, "protocol"),
    (lambda: Worker("tcp://127.0.0.1:1", no_such_keyword=1), TypeError, "no_such_keyword"),
    (lambda: Worker("tcp://127.0.0.1:1", nthreads=0), ValueError, "nthreads"),
    (lambda: Worker(), ValueError, "scheduler"),
    (lambda: Worker("tcp://127.0.0.1:1", lifetime="-1s"), ValueError, "lifetime"),
    (lambda: Scheduler(plugins=[object()]), TypeError, "SchedulerPlugin"),
    (lambda: Scheduler(security="secret"), TypeError, "security"),
    (lambda: Scheduler(jupyter=True), NotImplementedError, "Jupyter"),
    (lambda: Scheduler(blocked_handlers=["no_such_request"]), ValueError, "no_such_request"),
    (lambda: Scheduler(no_such_keyword=1), TypeError, "no_such_keyword"),
    (lambda: Nanny("tcp://127.0.0.1:1", preload_nanny=["m"]), NotImplementedError, "preload_nanny"),
    (lambda: Nanny("tcp://127.0.0.1:1", plugins=[object()]), NotImplementedError, "plugins"),
    (lambda: Nanny("tcp://127.0.0.1:1", no_such_keyword=1), TypeError, "no_such_keyword"),
    (lambda: Nanny("tcp://127.0.0.1:1", reconnect=False), NotImplementedError, "reconnect"),
])
def test_keywords_shoal_cannot_honour_are_refused_by_name(make: Callable[[], Any], error: type,
                                                          name: str) -> None:
    with pytest.raises(error, match=name):
        make()
