"""LocalCluster as dask's: its keywords reach the scheduler and the workers,
and its members (scheduler_info, wait_for_workers, get_client, scale,
scheduler, reprs) work with processes and without."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import signal
from collections.abc import Callable
from typing import Any

import pytest

from shoal import Client, LocalCluster, Nanny, Scheduler, Worker, get_worker
from shoal.deploy.sizing import system_memory

pytestmark = pytest.mark.timeout(90)


def scratch() -> str:
    return get_worker().local_directory  # type: ignore[no-any-return]


def allowed(dask_scheduler: Any) -> int:
    return dask_scheduler.state.allowed_failures  # type: ignore[no-any-return]


@pytest.mark.parametrize("processes", [True, False])
def test_keywords_reach_the_scheduler_and_workers_and_members_work(
        processes: bool, tmp_path: pathlib.Path, wait_until: Callable[..., bool]) -> None:
    shoal_logger = logging.getLogger("shoal")
    before = shoal_logger.level
    with LocalCluster("parity", n_workers=1, threads_per_worker=1, processes=processes,
                      resources={"GPU": 1}, local_directory=str(tmp_path), memory_limit="0.5",
                      silence_logs=logging.ERROR, dashboard_address=":0",
                      scheduler_kwargs={"allowed_failures": 7}) as cluster:
        assert cluster.name == "parity"
        if not processes:  # silence_logs: shoal's loggers in this process
            assert shoal_logger.level == logging.ERROR
        [info] = cluster.scheduler_info["workers"].values()
        assert info["resources"] == {"GPU": 1.0}
        assert info["memory_limit"] == int(0.5 * system_memory())
        assert info["local_directory"].startswith(str(tmp_path / "shoal-scratch-space"))
        [record] = cluster.scheduler.workers.values()  # dask-examples' resilience notebook
        assert record.pid == info["pid"] and record.name == info["name"]
        assert cluster.scheduler.address == cluster.scheduler_address
        if not processes:
            assert isinstance(cluster.scheduler, Scheduler)

        text = repr(cluster)
        assert text.startswith("LocalCluster(parity, ") and cluster.scheduler_address in text
        assert "workers=1, threads=1, memory=" in text
        assert cluster.scheduler_address in cluster._repr_html_()

        with cluster.get_client() as client:
            assert client.cluster is cluster and cluster.get_client() is client
            assert client.submit(scratch).result(timeout=20) == info["local_directory"]
            assert client.run_on_scheduler(allowed) == 7
            [(name, spec)] = cluster.new_worker_spec().items()
            assert spec["cls"] is (Nanny if processes else Worker) and name not in cluster.plan
            cluster.scale(cores=2)  # one thread per worker: two workers
            cluster.wait_for_workers(2, timeout=30)
            assert len(cluster.scheduler_info["workers"]) == 2
            assert cluster.plan == cluster.requested == cluster.observed == {"0", name}
            cluster.sync(cluster.scale_down, [next(iter(cluster.scheduler_info["workers"]))])
            assert wait_until(lambda: len(cluster.scheduler_info["workers"]) == 1, 30)
            assert len(cluster.plan) == 1
            cluster.scale_up(2)
            assert len(cluster.scheduler_info["workers"]) == 2
            cluster.scale(memory=cluster.memory_limit // 2)  # one is enough: max(n=0, 1)
            assert wait_until(lambda: len(cluster.scheduler_info["workers"]) == 1, 30)
            with pytest.raises(NotImplementedError, match="scale"):
                cluster.start_worker()
    assert shoal_logger.level == before
    assert not any(tmp_path.glob("shoal-scratch-space/worker-*"))
    assert cluster.status == "closed"


def test_a_worker_killed_under_the_nanny_is_restarted(wait_until: Callable[..., bool]) -> None:
    """dask-examples' resilience notebook: kill worker processes with SIGTERM,
    found through ``cluster.scheduler.workers``; the nanny starts new ones."""
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        pids = [w.pid for w in cluster.scheduler.workers.values()]
        os.kill(pids[0], signal.SIGTERM)

        def replaced() -> bool:
            now = {w.pid for w in cluster.scheduler.workers.values()}
            return len(now) == 2 and pids[0] not in now and pids[1] in now

        assert wait_until(replaced, 30)
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2]).result(timeout=20) == 3


def test_an_asynchronous_cluster_returns_awaitables() -> None:
    async def main() -> None:
        async with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                asynchronous=True) as cluster:
            assert cluster.loop is asyncio.get_running_loop() and cluster.called_from_running_loop
            await cluster.scale(2)
            await cluster.wait_for_workers(2, timeout=20)
            assert len(cluster.scheduler_info["workers"]) == 2
            assert cluster.observed == cluster.plan == {"0", "1"}
            await cluster.scale_down(["1"])
            assert cluster.plan == {"0"}
            assert await cluster.sync(asyncio.sleep, 0, "slept") == "slept"
            async with cluster.get_client() as client:
                assert await client.submit(sum, [1, 2]) == 3
        assert cluster.status == "closed"

    asyncio.run(main())


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"loop": object()}, NotImplementedError, "loop"),
    ({"security": object()}, TypeError, "security"),
    ({"protocol": "ucx://"}, NotImplementedError, "protocol"),
    ({"worker_class": "my.Worker"}, NotImplementedError, "worker_class"),
    ({"services": {"x": object}}, NotImplementedError, "services"),
    ({"no_such_keyword": 1}, TypeError, "no_such_keyword"),
    ({"scheduler_kwargs": {"plugins": [object()]}}, NotImplementedError, "plugins"),
])
def test_keywords_shoal_cannot_honour_are_refused_by_name(kwargs: dict[str, Any], error: type,
                                                          name: str) -> None:
    with pytest.raises(error, match=name):
        LocalCluster(n_workers=1, threads_per_worker=1, **kwargs)


def test_a_local_cluster_cannot_be_found_by_name() -> None:
    with pytest.raises(NotImplementedError, match="by name"):
        LocalCluster.from_name("somewhere")


def test_an_asynchronous_cluster_is_not_used_with_a_plain_with() -> None:
    cluster = LocalCluster(n_workers=0, processes=False, asynchronous=True)
    with pytest.raises(TypeError, match="async with"), cluster:
        pass
