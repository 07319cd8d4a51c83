"""Regressions from the acceptance run (issue 9): waiting on futures.

1. An asynchronous client's ``await future.exception()`` raised ``TypeError:
   object ValueError can't be used in 'await' expression``.
2. ``as_completed`` over a ``map`` with two equal inputs yielded one of them
   three times.
3. In a long-lived cluster, tasks were queued behind others while threads were
   idle: a cancelled task still running on a thread was invisible to the
   scheduler.
4. Futures handed to ``as_completed`` (or ``add_done_callback``) stayed alive
   until the next garbage collection, so their keys stayed on the cluster.

The cluster here has two workers with two threads each.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Iterator
from random import Random

import pytest

from shoal import (
    CancelledError,
    Client,
    Event,
    LocalCluster,
    as_completed,
    get_client,
    rejoin,
    secede,
    wait,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes with two threads each (four threads in all)."""
    with LocalCluster(n_workers=2, threads_per_worker=2, validate=True) as c:
        yield c


def inc(x: int) -> int:
    return x + 1


def might_fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def gated(tag: str, i: int) -> int:
    """Say it started, then wait until the test lets it finish."""
    Event(f"{tag}-started-{i}").set()
    if not Event(f"{tag}-go-{i}").wait(timeout=50):
        raise TimeoutError(f"{tag}-go-{i} was never set")
    return i


def blocker(tag: str, i: int) -> int:
    """``gated``, under a name of its own: it runs until cancelled, so the
    scheduler never learns its duration (it expects a long run)."""
    return gated(tag, i)


def set_event(name: str) -> None:
    """From a task (an asynchronous client's primitives are not this file's
    subject): let a gated task finish."""
    Event(name).set()


def fib(n: int) -> int:
    """Tasks that submit tasks (seceding while they wait)."""
    if n < 2:
        return n
    client = get_client()
    secede()
    a, b = client.map(fib, [n - 1, n - 2])
    total = a.result() + b.result()
    rejoin()
    return int(total)


def _no_gc_forgotten(client: Client, keys: set[str], timeout: float = 10.0) -> bool:
    """Poll until the scheduler has no record of ``keys``, without ever
    running the garbage collector: reference counting alone must free them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not keys & set(client.task_states()):
            return True
        time.sleep(0.02)
    return not keys & set(client.task_states())


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# 1. every asynchronous path of an erred future
# ---------------------------------------------------------------------------


def test_async_client_erred_future_on_every_path(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            f = c.submit(might_fail, -1)
            with pytest.raises(ValueError, match="negative: -1"):
                await f
            with pytest.raises(ValueError, match="negative: -1"):
                await c.gather([f])
            with pytest.raises(ValueError, match="negative: -1"):
                await f.result()
            with pytest.raises(ValueError, match="negative: -1"):
                await f.result(timeout=10)
            exc = await f.exception()
            assert type(exc) is ValueError and str(exc) == "negative: -1"
            tb = await f.traceback()
            assert tb is not None and hasattr(tb, "tb_frame")
            ok = c.submit(inc, 1)
            assert await ok.exception() is None
            assert await ok.traceback() is None
            assert await c.gather([f], errors="skip") == []

            done, not_done = await wait([f, ok])
            assert done == {f, ok} and not not_done

            seen = [g async for g in as_completed([f, ok])]
            assert sorted(g.status for g in seen) == ["error", "finished"]
            with pytest.raises(ValueError, match="negative: -1"):
                async for _ in as_completed([f], with_results=True):
                    pass
            pairs = [p async for p in as_completed([f, ok], with_results=True, raise_errors=False)]
            by_status = {g.status: r for g, r in pairs}
            assert by_status["finished"] == 2
            typ, err, err_tb = by_status["error"]
            assert typ is ValueError and isinstance(err, ValueError) and err_tb is not None

            # a retry is awaitable, as in dask
            await f.retry()
            with pytest.raises(ValueError, match="negative: -1"):
                await f

    asyncio.run(asyncio.wait_for(main(), 40))


def test_async_exception_and_wait_first_exception_do_not_block_the_loop(cluster: LocalCluster) -> None:
    """``exception()`` of a pending future must wait without blocking the
    event loop (it used to wait synchronously on the loop's own thread), and
    ``wait(return_when=FIRST_EXCEPTION)`` must return at the first error, as
    the synchronous one does."""
    tag = uuid.uuid4().hex

    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            slow = c.submit(gated, tag, 0)
            with pytest.raises(TimeoutError):
                await slow.exception(timeout=0.2)
            with pytest.raises(TimeoutError):
                await slow.result(timeout=0.2)
            bad = c.submit(might_fail, -2)
            done, not_done = await wait([slow, bad], return_when="FIRST_EXCEPTION")
            assert done == {bad} and not_done == {slow}
            await c.submit(set_event, f"{tag}-go-0", pure=False)
            assert await slow == 0

    asyncio.run(asyncio.wait_for(main(), 40))


# ---------------------------------------------------------------------------
# 2. duplicates in as_completed and wait: dask's semantics
# ---------------------------------------------------------------------------


def test_as_completed_yields_each_future_once_even_with_equal_keys(client: Client) -> None:
    futures = client.map(might_fail, [3, -1, 4, -1, 5, -9, 2, 6])
    assert futures[1] is futures[3]  # one key, one future object (as dask's map)
    ac = as_completed(futures)
    assert ac.count() == 8
    out = list(ac)
    assert len(out) == 8
    assert sum(f.status == "error" for f in out) == 3
    assert sorted(map(id, out)) == sorted(map(id, futures))
    assert ac.count() == 0 and ac.is_empty()

    # the same again once everything is done, and for successful duplicates
    ok = client.map(inc, [1, 1, 2])
    wait(ok)
    assert len(list(as_completed(ok))) == 3
    assert sorted(r for _, r in as_completed(ok, with_results=True)) == [2, 2, 3]
    assert sum(len(b) for b in as_completed(ok).batches()) == 3
    pending = client.map(inc, [10, 10, 11], pure=False) + client.map(inc, [20, 20])
    assert len(list(as_completed(pending))) == 5


def test_as_completed_repeats_and_clear_follow_dask(client: Client) -> None:
    """dask's test_as_completed_repeats and test_clear: a future added twice is
    yielded twice; futures cleared while pending are never yielded."""
    tag = uuid.uuid4().hex
    x = client.submit(inc, 1)
    ac = as_completed()
    ac.add(x)
    ac.add(x)
    assert next(ac) is x
    assert next(ac) is x
    with pytest.raises(StopIteration):
        next(ac)
    ac.add(x)
    assert next(ac) is x

    slow = client.submit(gated, tag, 0)
    ac = as_completed([slow, slow])
    ac.clear()
    assert ac.count() == 0
    Event(f"{tag}-go-0").set()
    assert slow.result(timeout=10) == 0
    assert list(ac) == []


def test_with_results_without_raising_gives_dask_tuples(client: Client) -> None:
    """dask's test_as_completed_with_results_no_raise: an error comes as
    ``(type, exception, traceback)``, a cancelled future as its
    ``CancelledError``."""
    tag = uuid.uuid4().hex
    x = client.submit(might_fail, -1)
    y = client.submit(gated, tag, 1)
    z = client.submit(inc, 1)
    ac = as_completed([x, y, z], with_results=True, raise_errors=False)
    y.cancel()
    res = list(ac)
    dd = {id(r[0]): r[1] for r in res}
    assert set(dd) == {id(x), id(y), id(z)}
    assert isinstance(dd[id(y)], CancelledError)
    assert dd[id(x)][0] is ValueError and isinstance(dd[id(x)][1], ValueError)
    assert dd[id(z)] == 2
    Event(f"{tag}-go-1").set()


def test_futures_of_one_key_are_equal_and_yielded_once_per_add(client: Client) -> None:
    """As in dask (its Future is a TaskRef): two submissions of one pure call
    are equal futures (one task); ``wait`` returns sets, so one of them;
    ``as_completed`` yields once per future added."""
    a = client.submit(inc, 5)
    b = client.submit(inc, 5)
    assert a.key == b.key and a == b and hash(a) == hash(b)
    done, not_done = wait([a, b])
    assert done == {a} and not not_done
    yielded = list(as_completed([a, b, a]))
    assert len(yielded) == 3 and set(yielded) == {a}


def test_timeouts_of_wait_and_as_completed_as_in_dask(client: Client) -> None:
    """dask's keywords: ``wait(timeout="100ms")``, ``as_completed(timeout=)``;
    and ``wait(x, y)`` (a future as the timeout) fails with the fix spelled out."""
    tag = uuid.uuid4().hex
    f = client.submit(gated, tag, 0)
    try:
        with pytest.raises(TypeError, match=r"wait\(\[x, y, z\]\)"):
            wait(f, client.submit(inc, 1))
        with pytest.raises(TimeoutError):
            wait([f], timeout="100ms")
        ac = as_completed([f], timeout=0.2)
        with pytest.raises(TimeoutError):
            next(ac)
    finally:
        Event(f"{tag}-go-0").set()
    assert list(as_completed([f], timeout="30s")) == [f]


# ---------------------------------------------------------------------------
# 3. idle threads are used, whatever earlier work left behind
# ---------------------------------------------------------------------------


def _wait_started(tag: str, indices: list[int], timeout: float = 20.0) -> list[int]:
    """The gated tasks that have started within ``timeout`` s."""
    started = []
    deadline = time.monotonic() + timeout
    for i in indices:
        if Event(f"{tag}-started-{i}").wait(timeout=max(0.0, deadline - time.monotonic())):
            started.append(i)
    return started


def _earlier_workloads(client: Client) -> None:
    """What the seed notebooks run before: big maps, failures, retries, tasks
    that submit tasks, cancellations."""
    assert client.gather(client.map(inc, range(2000))) == list(range(1, 2001))
    failing = client.map(might_fail, [3, -1, 4, -1, 5, -9, 2, 6])
    wait(failing)
    assert sum(f.status == "error" for f in failing) == 3
    retried = client.submit(might_fail, -5, retries=2)
    wait(retried)
    assert retried.status == "error"
    assert client.submit(fib, 7).result(timeout=30) == 13
    many = client.map(inc, range(10_000, 12_000))
    client.cancel(many)
    del failing, retried, many


def test_idle_threads_are_used_while_cancelled_tasks_still_run(client: Client) -> None:
    """Both threads of one worker still run tasks that were cancelled (they
    cannot be interrupted); the two tasks submitted next must go to the
    other worker's two idle threads, not wait behind the cancelled ones."""
    tag = uuid.uuid4().hex
    first = next(iter(client.scheduler_info()["workers"]))
    blockers = [client.submit(blocker, tag, i, workers=[first], pure=False) for i in (100, 101)]
    assert _wait_started(tag, [100, 101]) == [100, 101]
    client.cancel(blockers)
    try:
        futures = [client.submit(gated, tag, i) for i in (0, 1)]
        assert _wait_started(tag, [0, 1]) == [0, 1], client.processing()
        for i in (0, 1):
            Event(f"{tag}-go-{i}").set()
        assert client.gather(futures) == [0, 1]
    finally:
        for i in (0, 1, 100, 101):
            Event(f"{tag}-go-{i}").set()


def test_completion_order_in_a_long_lived_cluster(client: Client) -> None:
    """The acceptance scenario: after many other workloads, one thread busy
    with a cancelled task, three tasks on the three idle threads all start at
    once and come back from as_completed in the order they end."""
    _earlier_workloads(client)
    tag = uuid.uuid4().hex
    stuck = client.submit(blocker, tag, 100, pure=False)
    assert _wait_started(tag, [100]) == [100]
    stuck.cancel()
    try:
        futures = client.map(gated, [tag] * 3, [0, 1, 2])
        assert _wait_started(tag, [0, 1, 2]) == [0, 1, 2], client.processing()
        ac = as_completed(futures)
        for i in (2, 0, 1):  # the order in which they end
            Event(f"{tag}-go-{i}").set()
            assert next(ac) is futures[i]
    finally:
        for i in (0, 1, 2, 100):
            Event(f"{tag}-go-{i}").set()


# ---------------------------------------------------------------------------
# 4. nothing keeps dropped futures alive
# ---------------------------------------------------------------------------


def rosenbrock(point: tuple[float, float], tag: str = "") -> tuple[tuple[float, float], float]:
    if tag:
        Event(tag).wait(timeout=50)
    score = (1 - point[0]) ** 2 + 2 * (point[1] - point[0] ** 2) ** 2
    return point, score


def test_search_with_as_completed_add_then_break_forgets_every_key(
    client: Client, no_gc: None
) -> None:
    """Seed 002's search: 10 points, each result submits a new point
    (``iterator.add``), break after N; the points still in flight when the
    loop breaks are dropped too.  Every key must be forgotten, by reference
    counting alone (the futures were kept alive by a reference cycle)."""
    rng = Random(2)
    tag = uuid.uuid4().hex  # the points submitted last wait for it
    keys: set[str] = set()
    futures = [client.submit(rosenbrock, (rng.uniform(-5, 5), rng.uniform(-5, 5))) for _ in range(10)]
    keys.update(f.key for f in futures)
    iterator = as_completed(futures)
    best_point, best_score = (0.0, 0.0), float("inf")
    for n, res in enumerate(iterator):
        point, score = res.result()
        if score < best_score:
            best_point, best_score = point, score
        x, y = best_point
        new_point = client.submit(rosenbrock, (x + rng.uniform(-1, 1), y + rng.uniform(-1, 1)),
                                  tag if n >= 20 else "")
        iterator.add(new_point)
        keys.add(new_point.key)
        if n >= 29:
            break
    assert iterator.count() == 10  # ten still to come, most of them waiting on the tag
    del futures, new_point, iterator, res
    try:
        assert _no_gc_forgotten(client, keys), client.task_states()
    finally:
        Event(tag).set()


def test_finished_as_completed_and_callbacks_keep_nothing(client: Client, no_gc: None) -> None:
    """After iterating to the end (or a done-callback has run), dropping the
    futures frees their keys without a garbage collection."""
    called: list[str] = []
    futures = client.map(inc, range(5))
    futures[0].add_done_callback(lambda f: called.append(f.key))
    out = list(as_completed(futures))
    assert len(out) == 5
    keys = {f.key for f in futures}
    deadline = time.monotonic() + 10
    while not called and time.monotonic() < deadline:
        time.sleep(0.01)
    assert called == [futures[0].key]
    del futures, out
    assert _no_gc_forgotten(client, keys), client.task_states()

    async def main() -> set[str]:
        async with Client(client.scheduler_address, asynchronous=True) as c:
            fs = c.map(inc, range(20, 25))
            got = [f async for f in as_completed(fs)]
            assert len(got) == 5
            return {f.key for f in fs}

    async_keys = asyncio.run(asyncio.wait_for(main(), 30))
    assert _no_gc_forgotten(client, async_keys), client.task_states()


def test_same_pure_tasks_run_again_after_their_futures_were_dropped(client: Client) -> None:
    """A long-lived client runs the same three calls twice, dropping the
    futures in between: the second run must compute them again, not find the
    first run's results still held (it then came back in submission order)."""
    tag = uuid.uuid4().hex

    def run() -> list[str]:
        futures = client.map(gated, [tag] * 3, [0, 1, 2])
        for i in (0, 1, 2):
            Event(f"{tag}-go-{i}").set()
        statuses = [f.status for f in as_completed(futures)]
        keys = [f.key for f in futures]
        for i in (0, 1, 2):
            Event(f"{tag}-go-{i}").clear()
        for i in (0, 1, 2):
            Event(f"{tag}-started-{i}").clear()
        assert statuses == ["finished"] * 3
        return keys

    gc.collect()
    gc.disable()
    try:
        keys = run()
        assert _no_gc_forgotten(client, set(keys)), client.task_states()
    finally:
        gc.enable()
    again = client.map(gated, [tag] * 3, [0, 1, 2])
    assert [f.status for f in again] == ["pending"] * 3
    for i in (0, 1, 2):
        Event(f"{tag}-go-{i}").set()
    assert client.gather(again) == [0, 1, 2]


def twice(tag: str, i: int) -> int:
    """Returns at once the first time; the second time waits for the test."""
    ran = Event(f"{tag}-ran-{i}")
    if ran.is_set() and not Event(f"{tag}-go-{i}").wait(timeout=50):
        raise TimeoutError("never let go")
    ran.set()
    return i


def test_news_of_a_released_key_does_not_finish_its_next_future(client: Client) -> None:
    """A caller gets a result (often pushed by the worker, ahead of the
    scheduler's notice), drops the future and submits the same pure call
    again.  The scheduler's notice about the first run, still on its way,
    must not finish the new future while its task runs again: it did, and
    such futures came back from as_completed in submission order."""
    tag = uuid.uuid4().hex
    for i in range(20):
        f = client.submit(twice, tag, i)
        assert f.result(timeout=10) == i
        key = f.key
        del f
        # the premise: the client dropped the key (nothing else holds a future for it)
        assert key not in client.refcount, f"round {i}: something still holds the future"
        g = client.submit(twice, tag, i)  # runs again, and waits
        try:
            client.task_states([g.key])  # whatever the scheduler sent before is in
            assert g.status == "pending", f"round {i}: a notice about the old run finished it"
        finally:
            Event(f"{tag}-go-{i}").set()
        assert g.result(timeout=10) == i
