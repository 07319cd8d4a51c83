"""Cluster control against real processes: ``client.run``, ``restart``,
``restart_workers``, ``retire_workers``, ``rebalance``, ``replicate`` and
``wait_for_workers``.  Tests that restart or retire workers start clusters
of their own; the others use the module's cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal import CancelledError, Client, LocalCluster
from shoal.errors import WorkerStartTimeoutError

from ..conftest import token_env

pytestmark = pytest.mark.timeout(60)


def worker_name(dask_worker: Any) -> str:
    return str(dask_worker.name)


async def worker_address_later(dask_worker: Any) -> str:
    await asyncio.sleep(0)  # really on the worker's event loop
    return str(dask_worker.address)


def fail_on(name: str, dask_worker: Any) -> str:
    if dask_worker.name == name:
        raise ValueError(f"refused on {name}")
    return str(dask_worker.name)


async def touch_later(path: str, dask_worker: Any) -> None:
    await asyncio.sleep(0.05)
    Path(f"{path}-{dask_worker.name}").touch()


def touch(path: str, dask_worker: Any) -> None:
    Path(f"{path}-{dask_worker.name}").touch()


def record_pid(path: str) -> str:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return path


class UnpickledWhere:
    """Writes the pid of every process that unpickles it to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (record_pid, (self.path,))


def counted(path: str, i: int) -> Any:
    """Writes a line per execution, so a test can tell a recomputation."""
    with open(path, "a") as f:
        f.write(f"{i}\n")
    return np.full(50_000, i)  # too big to travel inline: it lives on its worker


def supervised(cluster: LocalCluster) -> dict[str, Any]:
    """The cluster's supervisor's workers: name -> WorkerProcess."""
    assert cluster._supervisor is not None
    return cluster._supervisor.workers


def held_on(client: Client) -> dict[str, int]:
    return {w: len(keys) for w, keys in client.has_what().items()}


@pytest.fixture
def own_cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """Two supervised worker processes, for tests that restart or retire them."""
    with LocalCluster(n_workers=2, threads_per_worker=1, validate=True) as cluster, \
            Client(cluster, timeout=10) as client:
        yield cluster, client


# ---------------------------------------------------------------------------
# client.run
# ---------------------------------------------------------------------------


def test_run_on_every_worker_and_on_chosen_ones(client: Client) -> None:
    pids = client.run(os.getpid)
    workers = client.scheduler_info()["workers"]
    assert set(pids) == set(workers)
    assert {pids[a] for a in workers} == {w["pid"] for w in workers.values()} and os.getpid() not in pids.values()
    names = client.run(worker_name)
    assert names == {a: w["name"] for a, w in workers.items()}
    assert client.run(worker_address_later) == {a: a for a in workers}
    first, second = sorted(workers)
    by_name = workers[first]["name"]
    assert client.run(worker_name, workers=[by_name]) == {first: by_name}
    assert client.run(worker_name, workers=[second]) == {second: workers[second]["name"]}
    assert client.run(pow, 2, 10, workers=[first]) == {first: 1024}  # args, kwargs pass on
    assert client.run(int, "ff", base=16, workers=[first]) == {first: 255}


def test_run_errors_raise_return_or_are_ignored(client: Client) -> None:
    workers = client.scheduler_info()["workers"]
    bad, good = sorted(workers)
    bad_name = workers[bad]["name"]
    with pytest.raises(ValueError, match=f"refused on {bad_name}"):
        client.run(fail_on, bad_name)
    returned = client.run(fail_on, bad_name, on_error="return")
    assert isinstance(returned[bad], ValueError) and returned[good] == workers[good]["name"]
    assert client.run(fail_on, bad_name, on_error="ignore") == {good: workers[good]["name"]}
    with pytest.raises(ValueError, match="on_error"):
        client.run(os.getpid, on_error="warn")
    with pytest.raises(ValueError, match="no worker with address or name"):
        client.run(os.getpid, workers=["tcp://127.0.0.1:1"])
    with pytest.raises(NotImplementedError, match="nanny"):
        client.run(os.getpid, nanny=True)
    with pytest.raises(TypeError, match="function"):
        client.run(42)  # type: ignore[arg-type]


def test_run_without_waiting(client: Client, tmp_path: Path, wait_until: Callable[..., bool]) -> None:
    names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
    for i, fn in enumerate((touch_later, touch)):
        path = str(tmp_path / f"flag{i}")
        assert client.run(fn, path, wait=False) is None
        assert wait_until(lambda path=path: all(Path(f"{path}-{n}").exists() for n in names))


def test_run_payloads_are_opened_on_the_workers_only(client: Client, tmp_path: Path) -> None:
    """The function's arguments and its result pass through the scheduler
    unopened: only the workers (and, for the result, this client) unpickle."""
    path = str(tmp_path / "pids")
    result = client.run(lambda x: UnpickledWhere(x), UnpickledWhere(path))
    assert set(result.values()) == {path}
    pids = {int(p) for p in Path(path).read_text().split()}
    workers = {w["pid"] for w in client.scheduler_info()["workers"].values()}
    assert pids == workers | {os.getpid()}  # each worker opened the argument; we, the results
    assert client.run_on_scheduler(os.getpid) not in pids


# ---------------------------------------------------------------------------
# restart
# ---------------------------------------------------------------------------


def test_restart_gives_fresh_workers_and_cancels_every_client_s_futures(
        own_cluster: tuple[LocalCluster, Client], tmp_path: Path) -> None:
    cluster, client = own_cluster
    done = client.map(np.ones, [100_000, 5])
    client.gather(done)
    running = client.submit(time.sleep, 30, pure=False)  # still running at the restart
    with Client(cluster, timeout=10) as other:
        theirs = other.submit(sum, [1, 2])
        theirs.result(timeout=10)
        old_pids = client.run(os.getpid)

        client.restart()

        for f in [*done, running, theirs]:
            assert f.status == "cancelled"
            with pytest.raises(CancelledError, match="restarted"):
                f.result(timeout=5)
        new_pids = client.run(os.getpid)
        assert len(new_pids) == 2 and not set(new_pids.values()) & set(old_pids.values())
        assert client.task_states() == {}
        assert other.submit(sum, [3, 4]).result(timeout=10) == 7
    assert client.submit(sum, [1, 2]).result(timeout=10) == 3
    assert all(not wp.deaths for wp in supervised(cluster).values())  # not crashes


def test_restart_without_waiting_then_wait_for_workers(own_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = own_cluster
    old = set(client.run(os.getpid).values())
    client.restart(timeout=None, wait_for_workers=False)  # None: no time limit
    client.wait_for_workers(2, timeout=30)
    assert not set(client.run(os.getpid).values()) & old


def test_restart_of_an_in_process_cluster_replaces_its_workers(inproc_client: Client) -> None:
    """processes=False: the workers are replaced by new ones in this process."""
    old = set(inproc_client.run(worker_name))
    f = inproc_client.submit(sum, [1, 2])
    f.result(timeout=10)
    inproc_client.restart(timeout=20)
    with pytest.raises(CancelledError):
        f.result(timeout=5)
    new = inproc_client.run(worker_name)
    assert len(new) == 2 and not set(new) & old
    assert sorted(new.values()) == ["0", "1"]  # same names, new workers
    assert inproc_client.submit(sum, [3, 4]).result(timeout=10) == 7


def test_restart_workers_recomputes_what_they_held(own_cluster: tuple[LocalCluster, Client],
                                                   tmp_path: Path) -> None:
    cluster, client = own_cluster
    log = str(tmp_path / "runs")
    workers = client.scheduler_info()["workers"]
    victim = sorted(workers)[0]
    name = workers[victim]["name"]
    f = client.submit(counted, log, 1, workers=[victim], allow_other_workers=True)
    f.result(timeout=10)
    assert client.restart_workers([name]) == {name: "OK"}
    assert victim not in client.scheduler_info()["workers"]
    client.wait_for_workers(2, timeout=30)
    assert client.submit(np.sum, f).result(timeout=30) == 50_000  # recomputed from its lineage
    assert Path(log).read_text().split() == ["1", "1"]
    assert all(not wp.deaths for wp in supervised(cluster).values())
    with pytest.raises(ValueError, match="no worker with address or name"):
        client.restart_workers(["nobody"])


def test_restart_of_workers_supervised_by_the_shoal_worker_command() -> None:
    """``shoal worker ADDRESS`` (with its nanny, the default) restarts its
    worker in a new process when the scheduler asks."""
    with LocalCluster(n_workers=0) as cluster, Client(cluster) as client:
        command = subprocess.Popen([sys.executable, "-m", "shoal", "worker", cluster.scheduler_address,
                                    "--name", "cli"], env=token_env(cluster))
        try:
            client.wait_for_workers(1, timeout=30)
            (old,) = client.run(os.getpid).values()
            client.restart(timeout=30)
            (info,) = client.scheduler_info()["workers"].values()
            assert info["name"] == "cli" and info["pid"] != old and info["nanny"] == "supervisor"
            assert command.poll() is None  # the supervising command itself stays
        finally:
            command.terminate()
            command.wait(15)


def test_restart_of_a_worker_without_supervisor() -> None:
    """``shoal worker --no-nanny`` has nobody to start it again:
    ``restart_workers`` refuses it; ``restart`` closes it and times out
    waiting for it."""
    with LocalCluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        alone = subprocess.Popen([sys.executable, "-m", "shoal", "worker", cluster.scheduler_address,
                                  "--no-nanny", "--name", "alone"], env=token_env(cluster))
        try:
            client.wait_for_workers(2, timeout=30)
            info = client.scheduler_info()["workers"]
            assert sorted(str(w["nanny"]) for w in info.values()) == ["None", "supervisor"]
            with pytest.raises(ValueError, match="requires a nanny"):
                client.restart_workers(["alone"])
            with pytest.raises(TimeoutError, match="have not returned"):
                client.restart(timeout=2)
            assert alone.wait(15) == 0  # closed, for good
            assert len(client.scheduler_info()["workers"]) == 1
        finally:
            if alone.poll() is None:
                alone.kill()
                alone.wait()


# ---------------------------------------------------------------------------
# retire_workers
# ---------------------------------------------------------------------------


def test_retire_moves_data_first_and_the_worker_stays_gone(
        own_cluster: tuple[LocalCluster, Client], tmp_path: Path,
        wait_until: Callable[..., bool]) -> None:
    cluster, client = own_cluster
    log = str(tmp_path / "runs")
    workers = client.scheduler_info()["workers"]
    leaving, staying = sorted(workers)
    futures = [client.submit(counted, log, i, workers=[leaving]) for i in range(6)]
    small = client.submit(sum, [1, 2], workers=[leaving])  # travels inline too
    big = client.submit(np.ones, 700_000, workers=[leaving])  # 5.6 MB: in shared memory
    client.gather([*futures, small, big])

    retired = client.retire_workers([leaving])

    assert list(retired) == [leaving]
    assert retired[leaving]["name"] == workers[leaving]["name"] and "metrics" in retired[leaving]
    assert list(client.scheduler_info()["workers"]) == [staying]
    assert all(holders == [staying] for holders in client.who_has([*futures, small, big]).values())
    assert [int(a[0]) for a in client.gather(futures)] == list(range(6)) and small.result() == 3
    assert sorted(Path(log).read_text().split()) == [str(i) for i in range(6)]  # no recomputation
    name = workers[leaving]["name"]
    assert wait_until(lambda: name not in supervised(cluster), timeout=20)
    assert list(client.scheduler_info()["workers"]) == [staying]  # its supervisor let it go
    # the copy outlives the process it came from
    assert client.submit(np.sum, big).result(timeout=10) == 700_000 and client.gather(big).sum() == 700_000


def test_retire_by_name_and_the_last_worker_cannot_retire(
        own_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = own_cluster
    workers = client.scheduler_info()["workers"]
    first, last = sorted(workers)
    x = client.submit(np.ones, 100_000, workers=[last])
    x.result(timeout=10)
    assert list(client.retire_workers(names=[workers[first]["name"]])) == [first]
    assert client.retire_workers([last]) == {}  # its data could go nowhere
    info = client.scheduler_info()["workers"]
    assert list(info) == [last] and info[last]["status"] == "running"
    assert client.submit(np.sum, x).result(timeout=10) == 100_000
    assert client.retire_workers(["tcp://127.0.0.1:1"]) == {}  # unknown: skipped, as in dask
    with pytest.raises(TypeError, match="mutually exclusive"):
        client.retire_workers([last], names=["x"])
    with pytest.raises(NotImplementedError, match="key"):
        client.retire_workers(key=lambda ws: ws.host)


def test_retire_idle_workers_chosen_by_the_scheduler(own_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = own_cluster
    workers = client.scheduler_info()["workers"]
    busy_one = sorted(workers)[0]
    x = client.submit(np.ones, 100_000, workers=[busy_one])
    x.result(timeout=10)
    retired = client.retire_workers(n=1)  # the one holding least goes
    assert list(retired) == [a for a in workers if a != busy_one]
    assert client.submit(np.sum, x).result(timeout=10) == 100_000


# ---------------------------------------------------------------------------
# rebalance, replicate
# ---------------------------------------------------------------------------


def test_rebalance_evens_out_bytes_by_moving(client: Client, forgotten: Callable[..., bool]) -> None:
    first, second = sorted(client.scheduler_info()["workers"])
    xs = client.map(np.full, [40_000] * 8, range(8), workers=[first])
    client.gather(xs)
    assert held_on(client)[first] >= 8
    client.rebalance(xs)
    where = client.who_has(xs)
    assert all(len(holders) == 1 for holders in where.values())  # moved, not copied
    counts = [sum(1 for h in where.values() if h == [w]) for w in (first, second)]
    assert counts == [4, 4]
    assert [int(a[0]) for a in client.gather(xs)] == list(range(8))
    keys = [x.key for x in xs]
    del xs
    assert forgotten(keys)


def test_rebalance_of_a_future_without_data_is_a_key_error(client: Client) -> None:
    def fail() -> None:
        raise RuntimeError("no data")

    f = client.submit(fail)
    with pytest.raises(KeyError, match="Could not rebalance"):
        client.rebalance([f])
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.rebalance(nope=1)


def test_replicate_everywhere_then_fewer_and_release_frees_every_copy(
        client: Client, forgotten: Callable[..., bool]) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    xs = client.map(np.full, [40_000] * 3, range(3), workers=[workers[0]])
    client.replicate(xs)
    assert all(sorted(h) == workers for h in client.who_has(xs).values())
    assert all(len(keys) >= 3 for keys in client.has_what().values())
    client.replicate(xs, n=1)
    assert all(len(h) == 1 for h in client.who_has(xs).values())
    client.replicate(xs[:1], n=2, workers=workers)
    assert sorted(client.who_has(xs[:1])[xs[0].key]) == workers
    keys = [x.key for x in xs]
    del xs
    assert forgotten(keys)


# ---------------------------------------------------------------------------
# wait_for_workers
# ---------------------------------------------------------------------------


def test_wait_for_workers_as_dask(client: Client) -> None:
    assert client.wait_for_workers(2, timeout=10) is None
    with pytest.raises(WorkerStartTimeoutError, match=r"Only 2/5 workers arrived after 0\.3") as info:
        client.wait_for_workers(5, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            client.wait_for_workers(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# an asynchronous client
# ---------------------------------------------------------------------------


def test_cluster_control_from_an_asynchronous_client() -> None:
    async def main() -> None:
        async with Client(asynchronous=True, n_workers=2, threads_per_worker=1,
                          processes=False) as client:
            names = await client.run(worker_name)
            assert sorted(names.values()) == ["0", "1"]
            first = sorted(names)[0]
            xs = client.map(np.full, [40_000] * 4, range(4), workers=[first])
            await client.rebalance(xs)  # waits for them first
            assert sorted(len(h) for h in (await client.who_has(xs)).values()) == [1] * 4
            assert len({h[0] for h in (await client.who_has(xs)).values()}) == 2
            await client.replicate(xs)
            assert all(len(h) == 2 for h in (await client.who_has(xs)).values())
            await client.wait_for_workers(2)
            await client.restart()
            assert all(x.status == "cancelled" for x in xs)
            assert set(await client.run(worker_name)).isdisjoint(names)

    asyncio.run(main())
