"""scatter, wait, as_completed, cancel, retries, fire_and_forget, callbacks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shoal import CancelledError, Client, as_completed, fire_and_forget, wait
from shoal.client.waiting import FIRST_COMPLETED

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def wait_for_file(path: str, timeout: float = 30.0) -> int:
    """Block until ``path`` exists (a gate the test opens)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return 1


def test_scatter_single_list_dict_and_numpy(client: Client) -> None:
    one = client.scatter(5)
    assert one.status == "finished" and one.result(timeout=10) == 5
    many = client.scatter([1, 2, 3])
    assert client.gather(many) == [1, 2, 3]
    named = client.scatter({"x": 10, "y": 20})
    assert set(named) == {"x", "y"} and named["x"].key == "x"
    assert client.submit(lambda a, b: a + b, named["x"], named["y"]).result(timeout=10) == 30
    arr = np.arange(3_000_000, dtype="f8")
    fa = client.scatter(arr)
    assert client.submit(np.sum, fa).result(timeout=20) == arr.sum()
    back = client.gather(fa)
    assert (back == arr).all()
    assert client.scatter(arr).key == fa.key  # hash=True: same data, same key


def test_scatter_broadcast_puts_data_on_every_worker(client: Client) -> None:
    f = client.scatter(list(range(10)), broadcast=True, hash=False)
    workers = client.scheduler_info()["workers"]
    for future in f:
        assert set(client.who_has([future])[future.key]) == set(workers)


def test_wait_all_first_and_timeout(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    fast = client.submit(inc, 1)
    slow = client.submit(wait_for_file, gate, pure=False)
    done, not_done = wait([fast, slow], return_when=FIRST_COMPLETED, timeout=10)
    assert fast in done and slow in not_done
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.2)
    Path(gate).touch()
    done, not_done = wait([fast, slow], timeout=10)
    assert done == {fast, slow} and not not_done


def test_as_completed_with_add_update_and_results(client: Client) -> None:
    futures = client.map(inc, range(5))
    ac = as_completed(futures, with_results=True)
    assert ac.count() == 5
    seen = []
    added = False
    for _future, result in ac:
        seen.append(result)
        if not added:
            ac.add(client.submit(inc, 100))
            ac.update([client.submit(inc, 200)])
            added = True
    assert sorted(seen) == [1, 2, 3, 4, 5, 101, 201]
    assert ac.is_empty()


def test_as_completed_batches(client: Client) -> None:
    futures = client.map(inc, range(20))
    got = []
    for batch in as_completed(futures).batches():
        assert batch
        got.extend(f.result() for f in batch)
    assert sorted(got) == list(range(1, 21))


def test_cancel_queued_and_running_tasks(client: Client, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    running = [client.submit(wait_for_file, gate, pure=False) for _ in range(2)]
    deadline = time.monotonic() + 10
    while sum(len(v) for v in client.processing().values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    dependent = client.submit(inc, running[0])
    running[0].cancel()
    assert running[0].status == "cancelled" and running[0].cancelled()
    with pytest.raises(CancelledError):
        running[0].result(timeout=5)
    with pytest.raises(CancelledError):
        dependent.result(timeout=5)  # what depends on a cancelled future is cancelled too
    Path(gate).touch()
    assert running[1].result(timeout=10) == 1
    deadline = time.monotonic() + 10
    while running[0].key in client.task_states() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.task_states([running[0]])[running[0].key] == "forgotten"


def flaky(path: str, fail_times: int) -> str:
    """Fails the first ``fail_times`` calls (counted in a file), then succeeds."""
    n = int(Path(path).read_text()) if os.path.exists(path) else 0
    Path(path).write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"failure {n + 1}")
    return "ok"


def test_retries_rerun_failing_tasks(client: Client, tmp_path: Path) -> None:
    assert client.submit(flaky, str(tmp_path / "a"), 2, retries=2).result(timeout=10) == "ok"
    f = client.submit(flaky, str(tmp_path / "b"), 2, retries=1)
    with pytest.raises(RuntimeError, match="failure 2"):
        f.result(timeout=10)
    f.retry()
    assert f.status == "pending"
    assert f.result(timeout=10) == "ok"


def write_file(path: str) -> str:
    time.sleep(0.2)
    Path(path).write_text("done")
    return path


def test_fire_and_forget_runs_after_the_future_is_dropped(client: Client, tmp_path: Path) -> None:
    target = tmp_path / "written"
    f = client.submit(write_file, str(target))
    fire_and_forget(f)
    del f
    deadline = time.monotonic() + 10
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.read_text() == "done"


def test_add_done_callback(client: Client) -> None:
    results = []
    done = threading.Event()

    def callback(future):  # type: ignore[no-untyped-def]
        results.append(future.result())
        done.set()

    f = client.submit(inc, 41)
    f.add_done_callback(callback)
    assert done.wait(10)
    assert results == [42]
    # on an already finished future the callback runs too
    done.clear()
    f.add_done_callback(callback)
    assert done.wait(10) and results == [42, 42]


def test_progress_draws_a_bar_and_returns_when_done(client: Client) -> None:
    import io

    from shoal import progress

    futures = client.map(inc, range(30))
    out = io.StringIO()
    progress(futures, notebook=False, file=out)
    assert all(f.done() for f in futures)
    last = out.getvalue().strip().split("\r")[-1]
    assert "100% Completed | 30/30" in last


def test_cancel_then_submit_the_same_pure_call_again(client: Client, tmp_path: Path) -> None:
    """The late answer to the cancel must not cancel the new future."""
    gate = str(tmp_path / "gate")
    first = client.submit(wait_for_file, gate)
    first.cancel()
    again = client.submit(wait_for_file, gate)
    assert again.key == first.key and again.status == "pending"
    Path(gate).touch()
    assert again.result(timeout=10) == 1
    assert first.status == "cancelled"  # the old handle stays cancelled


def test_scatter_dedupes_only_against_data_still_held(client: Client) -> None:
    import gc

    a = client.scatter(12345)
    b = client.scatter(12345)
    assert a.key == b.key  # equal data, one copy
    old = a.key
    del a, b
    gc.collect()
    c = client.scatter(12345)
    assert c.key != old  # never reuse a released key: its release may still be in flight
    assert c.result(timeout=10) == 12345


def mark_ran(directory: str, gate_result: int, i: int) -> int:
    Path(directory, str(i)).touch()
    return i


def quick_gate(path: str) -> int:
    """``wait_for_file`` looking every 0.2 ms: it ends as soon as it can."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.0002)
    return 1


def test_no_cancelled_task_starts_once_cancel_returns(client: Client, tmp_path: Path) -> None:
    """As in dask.distributed, ``cancel()`` returns once the scheduler has
    the cancellation: opening the gate right after it must not start any of
    the thousands of tasks that waited on the gate."""
    gate, ran = str(tmp_path / "gate"), tmp_path / "ran"
    ran.mkdir()
    g = client.submit(quick_gate, gate, pure=False)
    futs = client.map(mark_ran, [str(ran)] * 20000, [g] * 20000, range(20000), pure=False)
    deadline = time.monotonic() + 20
    while client.task_states([futs[-1]])[futs[-1].key] != "waiting" and time.monotonic() < deadline:
        time.sleep(0.01)
    client.cancel([*futs, g])
    Path(gate).touch()  # the gate task ends within milliseconds now
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2
    deadline = time.monotonic() + 20
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(client.processing().values())
    assert sorted(ran.iterdir()) == []


def test_an_asynchronous_cancel_is_awaitable(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")

    async def main() -> None:
        async with Client(n_workers=1, threads_per_worker=1, processes=False, asynchronous=True) as client:
            g = client.submit(wait_for_file, gate, pure=False)
            f = client.submit(inc, g, pure=False)
            await f.cancel()
            assert f.cancelled()
            assert (await client.task_states([f]))[f.key] == "forgotten"
            Path(gate).touch()

    asyncio.run(main())
