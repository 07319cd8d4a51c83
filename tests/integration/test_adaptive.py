"""Adaptive scaling of a real LocalCluster: it grows while a backlog waits,
shrinks to its minimum when idle, and the workers it lets go are retired
(their results copied to workers that stay, not recomputed)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shoal import Adaptive, Client, LocalCluster
from tests.conftest import poll_until


def _slow_inc(x: int) -> int:
    time.sleep(0.05)
    return x + 1


@pytest.mark.timeout(120)
def test_local_cluster_grows_under_a_backlog_and_shrinks_to_the_minimum_when_idle() -> None:
    """One worker, adaptive between 1 and 3; 80 short tasks arrive at once.
    The cluster must grow to 3 while they wait, and once they are done and
    the workers idle, shrink back to 1.  The results, spread over the three
    workers, must all survive the shrinking: the retired workers' results
    move to the one that stays (the scheduler's story shows each result
    computed once)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        adaptive = cluster.adapt(minimum=1, maximum=3, interval="100ms", wait_count=2,
                                 target_duration="1s")
        assert isinstance(adaptive, Adaptive)
        futures = client.map(_slow_inc, range(80))
        assert poll_until(lambda: len(cluster.workers) == 3, timeout=60), cluster.workers
        assert client.gather(futures) == list(range(1, 81))
        holders = {a for a, keys in client.has_what().items() if keys}
        assert len(holders) > 1  # the work was spread: shrinking must move data
        assert poll_until(lambda: len(cluster.workers) == 1, timeout=60), cluster.workers
        assert poll_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=30)
        assert client.gather(futures) == list(range(1, 81))
        (survivor,) = client.has_what()
        assert set(client.has_what()[survivor]) == {f.key for f in futures}
        story = client.story(*[f.key for f in futures])
        assert sum(1 for key, start, finish, *_ in story if finish == "memory") == 80
        assert [kind["status"] for _, kind in adaptive.log][:1] == ["up"]
        assert "down" in {kind["status"] for _, kind in adaptive.log}
        time.sleep(0.5)  # more rounds with nothing to do: it never goes below the minimum
        assert len(cluster.workers) == 1
    assert adaptive.state == "stopped"  # closing the cluster stopped it


@pytest.mark.timeout(60)
def test_scale_down_retires_workers_so_their_results_survive() -> None:
    """``cluster.scale(1)`` on two workers, each holding results: the
    leaving worker's results are copied to the one that stays first."""
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        addresses = sorted(client.scheduler_info()["workers"])
        futures = [client.submit(_slow_inc, i, workers=[addresses[i % 2]]) for i in range(6)]
        client.gather(futures)
        cluster.scale(1)
        assert len(client.scheduler_info()["workers"]) == 1
        (survivor,) = client.has_what()
        assert set(client.has_what()[survivor]) == {f.key for f in futures}
        assert client.gather(futures) == list(range(1, 7))


@pytest.mark.timeout(60)
def test_adapt_in_process_and_adapt_again_replaces_the_first() -> None:
    """processes=False: adapt up from zero workers when work arrives; a
    second ``adapt()`` stops the first and keeps its keywords."""
    with LocalCluster(n_workers=0, processes=False, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        first = cluster.adapt(minimum=0, maximum=2, interval="50ms", wait_count=1)
        second = cluster.adapt(maximum=1)
        assert first.state == "stopped"
        assert (second.minimum, second.maximum, second.interval, second.wait_count) == (0, 1, 0.05, 1)
        assert client.submit(_slow_inc, 1).result(timeout=30) == 2
        assert len(cluster.workers) == 1
        assert poll_until(lambda: len(cluster.workers) == 0, timeout=30)  # idle, minimum 0


def test_adapt_bounds_in_cores_and_memory(cluster: LocalCluster) -> None:
    """``minimum_cores``/``maximum_memory`` become numbers of workers (each
    worker here: one thread); bad keywords are refused by name.  A long
    interval: no round runs before it is stopped."""
    adaptive = cluster.adapt(minimum_cores=2, maximum_memory=3 * cluster.memory_limit,
                             interval="1h")
    try:
        assert (adaptive.minimum, adaptive.maximum) == (2, 3)
    finally:
        adaptive.stop()
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"bogus": 1}, TypeError, "bogus"),
        ({"worker_key": len}, NotImplementedError, "worker_key"),
        ({"target_duration": 0}, ValueError, "target_duration"),
        ({"minimum": 3, "maximum": 1}, ValueError, "below minimum"),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            cluster.adapt(interval="1h", **kwargs)
