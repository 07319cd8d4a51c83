"""Work larger than memory, with real worker processes: spilling to disk,
pausing, and the nanny restarting a worker past its terminate threshold.

The cluster has two workers with a 200 MB limit each (400 MB in all), so
that the suite stays light; benchmarks/spill.py runs the same at any size."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from shoal import Client, LocalCluster, wait
from tests.conftest import poll_until

LIMIT = 200_000_000
RESULT = 5_000_000  # bytes per result; 240 of them: 1.2 GB, 3x the cluster's limit


@pytest.fixture(scope="module")
def memory_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=LIMIT, validate=True) as c:
        yield c


@pytest.fixture
def mclient(memory_cluster: LocalCluster) -> Iterator[Client]:
    with Client(memory_cluster, timeout=10) as c:
        yield c


def make(i: int) -> Any:
    a = np.empty(RESULT // 8, dtype=np.float64)
    a[:] = i
    return a


def check(a: Any, i: int) -> bool:
    return a.shape == (RESULT // 8,) and bool((a == i).all())


def peak_rss(pid: int) -> int:
    """The highest resident set size the process ever had (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def workers(c: Client) -> dict[str, dict[str, Any]]:
    return dict(c.scheduler_info()["workers"])


@pytest.mark.timeout(240)
def test_results_three_times_the_memory_limit_spill_and_stay_correct(mclient: Client) -> None:
    before = {a: w["pid"] for a, w in workers(mclient).items()}
    n = 3 * 2 * LIMIT // RESULT
    futures = mclient.map(make, range(n))
    wait(futures)
    assert all(f.status == "finished" for f in futures)
    # every value, checked where it is (spilled ones are read back from disk)
    checks = mclient.map(check, futures, range(n))
    assert all(mclient.gather(checks))
    # and a few sent to this client, from memory or straight from their file
    for i in (0, n // 2, n - 1):
        assert check(futures[i].result(), i)
    # and to a peer: the oldest result is on disk; the other worker fetches it
    [holder] = mclient.who_has([futures[0]])[futures[0].key]
    [other] = [a for a in before if a != holder]
    where = mclient.run(lambda key, dask_worker: key in dask_worker.data.disk, futures[0].key,
                        workers=[holder])
    assert where == {holder: True}
    on_peer = mclient.submit(check, futures[0], 0, workers=[other], allow_other_workers=False)
    assert on_peer.result(timeout=30)

    def spilled() -> bool:
        info = workers(mclient)
        return all(w["metrics"]["spilled_bytes"]["disk"] > 0 for w in info.values())

    assert poll_until(spilled, 10)
    info = workers(mclient)
    managed = sum(w["metrics"]["managed_bytes"] for w in info.values())
    assert managed >= n * RESULT  # dask's layout: managed counts spilled values too
    # on each worker now: at most the target's worth in memory, the rest on disk
    held = mclient.run(lambda dask_worker: (dask_worker.data.memory_bytes,
                                            dask_worker.data.spilled_memory))
    assert sum(in_memory + on_disk for in_memory, on_disk in held.values()) >= n * RESULT
    for in_memory, _ in held.values():
        assert in_memory <= 0.6 * LIMIT + RESULT
    for w in info.values():
        m = w["metrics"]
        assert m["spilled_bytes"]["memory"] <= m["managed_bytes"]
        assert m["unmanaged_bytes"] >= 0 and m["memory"] > 0
    # no worker was restarted, and none went past its limit
    assert {a: w["pid"] for a, w in info.items()} == before
    for pid in before.values():
        assert peak_rss(pid) < LIMIT
    # memory as the nanny counts it (shared-memory values in full), at its
    # highest measure (every 100 ms and at each spill)
    peaks = mclient.run(lambda dask_worker: dask_worker.memory.peak_process_memory)
    assert all(0 < peak < LIMIT for peak in peaks.values())
    del futures, checks


def hog(fraction: float, dask_worker: Any) -> int:
    """Unmanaged memory, kept in a module global of the worker process, to
    bring its memory to ``fraction`` of its limit."""
    import shoal.worker.memory as target_module

    nbytes = int(fraction * dask_worker.memory_limit) - dask_worker.memory.measure()
    block = np.ones(max(0, nbytes) // 8)
    target_module._test_hog = block  # type: ignore[attr-defined]
    return int(block.nbytes)


def unhog() -> None:
    import shoal.worker.memory as target_module

    target_module.__dict__.pop("_test_hog", None)


def cyclic_hog(fraction: float, dask_worker: Any) -> int:
    """Unmanaged memory that is garbage only a full collection frees: a
    reference cycle, made old (it survived a full collection) and then
    dropped, bringing the worker's memory to ``fraction`` of its limit."""
    import gc

    import shoal.worker.memory as target_module

    nbytes = int(fraction * dask_worker.memory_limit) - dask_worker.memory.measure()
    cycle: list[Any] = [np.ones(max(0, nbytes) // 8)]
    cycle.append(cycle)
    target_module._test_cycle = cycle  # type: ignore[attr-defined]
    del cycle
    gc.collect()  # now in the oldest generation
    del target_module._test_cycle  # type: ignore[attr-defined]
    return nbytes


@pytest.mark.timeout(60)
def test_memory_past_the_spill_threshold_collects_garbage_first(mclient: Client) -> None:
    """Garbage in reference cycles holds memory until a full collection
    (rarer in workers: ``admin.gc.threshold``); past the spill fraction the
    memory monitor collects before it spills or pauses, so that memory comes
    back by itself."""
    address = sorted(workers(mclient))[0]

    def measured() -> int:
        return int(mclient.run(lambda dask_worker: dask_worker.memory.measure(),
                               workers=[address])[address])

    before = measured()
    made = mclient.run(cyclic_hog, 0.75, workers=[address])[address]  # past spill (70 %)
    assert made > 0.2 * LIMIT
    assert poll_until(lambda: measured() < before + made / 2, 20)  # most of it came back


def task_state(key: str, dask_worker: Any) -> str | None:
    ts = dask_worker.state.tasks.get(key)
    return None if ts is None else ts.state.value


@pytest.mark.timeout(120)
def test_worker_past_pause_threshold_starts_nothing_until_memory_falls(mclient: Client) -> None:
    address = sorted(workers(mclient))[0]
    # between the pause (80%) and terminate (95%) fractions
    mclient.run(hog, 0.875, workers=[address])
    try:
        assert poll_until(lambda: workers(mclient)[address]["status"] == "paused", 20)
        # the scheduler sends a paused worker nothing: a task only it may run waits
        fut = mclient.submit(sum, [1, 2, 3], workers=[address], pure=False)
        assert poll_until(lambda: mclient.task_states([fut])[fut.key] == "no-worker", 10)
        assert mclient.run(task_state, fut.key, workers=[address])[address] is None
        # while others go to the worker that is not paused
        other = mclient.submit(sum, [4, 5], pure=False)
        assert other.result(timeout=30) == 9
        assert mclient.who_has([other])[other.key] != [address]
        assert fut.status == "pending"
    finally:
        mclient.run(unhog, workers=[address])
    assert fut.result(timeout=30) == 6
    assert poll_until(lambda: workers(mclient)[address]["status"] == "running", 20)


@pytest.mark.timeout(120)
def test_nanny_restarts_a_worker_past_its_terminate_threshold(mclient: Client,
                                                              memory_cluster: LocalCluster) -> None:
    info = workers(mclient)
    address = sorted(info)[0]
    old_pid = info[address]["pid"]
    mclient.run(hog, 1.0, workers=[address], wait=False)

    def replaced() -> bool:
        now = workers(mclient)
        return len(now) == 2 and old_pid not in {w["pid"] for w in now.values()}

    assert poll_until(replaced, 60)
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert mclient.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
