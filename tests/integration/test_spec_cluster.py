"""SpecCluster and SubprocessCluster with real processes: start from
specifications, scale up and down (retiring gracefully), scheduler files,
asynchronous use, and nothing left running after close."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from shoal import Client, Nanny, Scheduler, SpecCluster, SubprocessCluster, Worker
from shoal.deploy.spec import ProcessInterface
from tests.conftest import poll_until

pytestmark = pytest.mark.timeout(90)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_subprocess_cluster_scales_and_leaves_no_process_behind() -> None:
    """SubprocessCluster: a scheduler process and one worker process;
    scaled to 2 both compute; scaled back to 1 the newest leaves and its
    results move first; closed, no process of the cluster is left."""
    with SubprocessCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        assert cluster.name == "SubprocessCluster"
        scheduler_pid = cluster.scheduler.process.pid
        with Client(cluster) as client:
            assert client.submit(lambda x: x + 1, 1).result() == 2
            cluster.scale(2)
            assert cluster.plan == cluster.requested == cluster.observed == {"0", "1"}
            pids = [w.process.pid for w in cluster.workers.values()]
            addresses = sorted(client.scheduler_info()["workers"])
            held = [client.submit(lambda i: i * 10, i, workers=[a], pure=False)
                    for i, a in enumerate(addresses)]
            assert client.gather(held) == [0, 10]
            cluster.scale(1)
            assert set(cluster.workers) == {0}
            assert len(client.scheduler_info()["workers"]) == 1
            assert client.gather(held) == [0, 10]  # the leaving worker's result moved
            assert sum(len(keys) for keys in client.has_what().values()) == 2
    assert cluster.status == "closed"
    assert poll_until(lambda: not any(_alive(p) for p in [scheduler_pid, *pids]), timeout=20)


def test_spec_cluster_of_nannies_with_a_scheduler_file(tmp_path: Any) -> None:
    """A SpecCluster of shoal's own classes: a Scheduler in this process
    writing a scheduler file, and Nanny workers; a client started from the
    file alone finds the cluster and its workers."""
    path = str(tmp_path / "scheduler.json")
    scheduler = {"cls": Scheduler, "options": {"scheduler_file": path}}
    worker = {"cls": Nanny, "options": {"nthreads": 1}}
    with SpecCluster(workers={"a": worker}, scheduler=scheduler, worker=worker) as cluster:
        cluster.scale(2)
        assert set(cluster.workers) == {"a", 0}
        with Client(scheduler_file=path) as client:
            assert client.scheduler_info()["address"] == cluster.scheduler_address
            assert sorted(w["name"] for w in client.scheduler_info()["workers"].values()) == ["0", "a"]
            assert client.submit(sum, [1, 2]).result() == 3
        assert "workers=2, threads=2" in repr(cluster)
        cluster.scale(cores=1)
        assert set(cluster.workers) == {"a"}  # the newest left
    assert not os.path.exists(path)  # the scheduler removes its file when it closes


def test_asynchronous_spec_cluster() -> None:
    """``async with SpecCluster(..., asynchronous=True)``: scale is awaited;
    workers in this process (``Worker``) compute for an async client."""

    async def main() -> None:
        worker = {"cls": Worker, "options": {"nthreads": 1}}
        async with SpecCluster(worker=worker, asynchronous=True) as cluster:
            await cluster.scale(2)
            assert len(cluster.workers) == 2
            async with Client(cluster, asynchronous=True) as client:
                assert await client.submit(lambda: 7) == 7
                assert len(await client.scheduler_info()) > 0
            await cluster.scale(0)
            assert cluster.workers == {}
        assert cluster.status == "closed"

    asyncio.run(main())


class Failing(ProcessInterface):
    """A worker whose resource manager refuses it."""

    def __init__(self, scheduler: str, name: Any = None) -> None:
        super().__init__()

    async def start(self) -> None:
        raise RuntimeError("no node available")


def test_a_worker_that_fails_to_start_is_reported_and_not_asked_for_again() -> None:
    worker = {"cls": Worker, "options": {"nthreads": 1}}
    with SpecCluster(worker=worker, workers={"ok": worker}) as cluster:
        cluster.worker_spec["bad"] = {"cls": Failing, "options": {}}
        with pytest.raises(RuntimeError, match="no node available"):
            cluster.scale(2)
        assert "bad" not in cluster.worker_spec and set(cluster.workers) == {"ok"}


def test_bad_specs_are_refused() -> None:
    with pytest.raises(TypeError, match="spec"):
        SpecCluster(worker={"options": {}})
    with pytest.raises(TypeError, match="workers\\[0\\]"):
        SpecCluster(workers={0: Worker})
    with pytest.raises(NotImplementedError, match="loop"):
        SpecCluster(loop=object())
    with SpecCluster() as cluster, pytest.raises(ValueError, match="no worker= spec"):
        cluster.scale(1)
    with pytest.raises(RuntimeError, match="failed to start its scheduler"):
        SpecCluster(scheduler={"cls": Scheduler, "options": {"port": "not-a-port"}})
