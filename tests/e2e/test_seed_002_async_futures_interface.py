"""Seed 002: "The async futures interface" (scipy tutorial notebook,
/work/shared/seeds/002_8802342334a357a2.txt), every code cell, with
``from dask.distributed`` / ``from distributed`` -> ``from shoal``, the 3-7 s
sleeps shortened to 0.01 s, and the bokeh plot replaced by plain Python lists.
"""

from __future__ import annotations

import time
from random import seed as random_seed
from random import uniform

import numpy as np
import pytest

from shoal import Client, CommClosedError, Future, LocalCluster, as_completed, wait

pytestmark = pytest.mark.timeout(60)

SEED = "002_8802342334a357a2.txt"
SLEEP = 0.01  # the notebook: inc 5 s, dec 3 s, add 7 s


# In [None] "Define some toy functions for simulating work"
def inc(x):
    time.sleep(SLEEP)
    return x + 1


def dec(x):
    time.sleep(SLEEP)
    return x - 1


def add(x, y):
    time.sleep(SLEEP)
    return x + y


def slow_inc(x):
    time.sleep(0.2)
    return x + 1


def make_cluster() -> LocalCluster:
    """Stand-in for ``scipy_utils.make_cluster`` (a LocalCluster of processes)."""
    return LocalCluster(n_workers=2, threads_per_worker=1)


# ------------------------------------------------ set-up and the final clean-up


def test_make_cluster_client_and_clean_up() -> None:
    # seed 002, first cells: cluster = make_cluster(); cluster; c = Client(cluster); c
    cluster = make_cluster()
    procs = list(cluster.workers.values())
    c = Client(cluster)
    try:
        assert cluster.status == "running"
        assert cluster.scheduler_address.startswith("tcp://")
        assert cluster.scheduler_address in repr(cluster)
        assert c.submit(inc, 1).result(timeout=10) == 2
        c.wait_for_workers(2, timeout=10)
        assert len(c.scheduler_info()["workers"]) == 2
    finally:
        # seed 002, last cell "# clean up": client.close(); cluster.close()
        c.close()
        cluster.close()
    assert c.status == "closed" and cluster.status == "closed"
    assert len(procs) == 2
    assert all(p.poll() is not None for p in procs), "worker processes outlived cluster.close()"
    # nothing listens on the old address any more
    with pytest.raises((OSError, TimeoutError)):
        Client(cluster.scheduler_address, timeout=0.5)


def test_make_cluster_then_client_shows_the_workers() -> None:
    # seed 002: cluster = make_cluster(); cluster; c = Client(cluster); c
    # The cells display the cluster and the client with their workers, as dask does
    # as soon as LocalCluster(...) has returned.
    with make_cluster() as cluster, Client(cluster) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        assert "processes=2 threads=" in repr(c)  # dask's repr: processes=N threads=N, memory=...


def test_after_clean_up_the_closed_client_refuses_work(cluster) -> None:  # type: ignore[no-untyped-def]
    # seed 002, last cell "# clean up": client.close() -- work sent afterwards fails clearly
    c = Client(cluster.scheduler_address)
    c.close()
    with pytest.raises(CommClosedError):
        c.submit(inc, 1)
    with pytest.raises(CommClosedError):
        c.map(inc, [1, 2])
    with pytest.raises(CommClosedError):
        c.gather(c.scatter([1]))


def test_after_clean_up_compute_on_the_closed_client_fails_clearly(cluster) -> None:  # type: ignore[no-untyped-def]
    # seed 002, last cell "# clean up": client.close(), then the delayed `total` again
    from dask import delayed

    c = Client(cluster.scheduler_address)
    c.close()
    total = delayed(add)(delayed(inc)(1), delayed(dec)(2))
    with pytest.raises(CommClosedError):
        c.compute(total).result(timeout=0.5)


# ------------------------------------------------------------- Client.submit


def test_client_submit_wait_result_and_gather(client: Client) -> None:
    c = client
    # seed 002, "Client.submit": fut = c.submit(inc, 1); fut
    fut = c.submit(slow_inc, 1)  # notebook: inc with a 5 s sleep
    assert fut.status == "pending"
    assert "status: pending" in repr(fut)
    # seed 002: from distributed import wait; wait(fut);
    wait(fut)
    assert fut.status == "finished"
    assert "status: finished" in repr(fut)
    # seed 002: fut.result()
    assert fut.result() == 2
    # seed 002: c.gather(fut)   "result is now already available"
    assert c.gather(fut) == 2


def test_client_compute_of_delayed_total(client: Client) -> None:
    c = client
    from dask import delayed

    # seed 002: x = delayed(inc)(1); y = delayed(dec)(2); total = delayed(add)(x, y)
    x = delayed(inc)(1)
    y = delayed(dec)(2)
    total = delayed(add)(x, y)
    # seed 002: fut = c.compute(total); fut; c.gather(fut)
    fut = c.compute(total)
    assert isinstance(fut, Future)
    assert c.gather(fut) == 3


def test_exercise_rebuild_delayed_computation_with_submit(client: Client) -> None:
    c = client
    # seed 002, "Exercise: Rebuild the above delayed computation using Client.submit"
    # (%load solutions/client_submit.py)
    x = c.submit(inc, 1)
    y = c.submit(dec, 2)
    total = c.submit(add, x, y)
    assert isinstance(total, Future)
    assert c.gather(total) == 3
    # the intermediate values stayed on the cluster: x and y are futures with values there
    assert set(c.who_has([x, y])) == {x.key, y.key}
    assert x.result() == 2 and y.result() == 1


def _bag_res():
    import dask.bag as db

    # seed 002: res = (db.from_sequence(range(10)).map(inc).filter(lambda x: x % 2 == 0).sum())
    res = db.from_sequence(range(10)).map(inc).filter(lambda x: x % 2 == 0).sum()
    return res


def test_bag_compute_progress_and_gather(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    c = client
    res = _bag_res()
    # seed 002: f = c.compute(res); f
    f = c.compute(res)
    assert isinstance(f, Future)
    assert f.status == "pending"
    # seed 002: from distributed.diagnostics import progress; progress(f)
    from shoal.diagnostics import progress

    progress(f)  # outside a notebook: a text bar, returning when f is done
    assert f.status == "finished"
    assert "100% Completed | 1/1" in capsys.readouterr().out
    # seed 002: c.gather(f)
    assert c.gather(f) == 2 + 4 + 6 + 8 + 10


def test_del_futures_releases_memory(client: Client, forgotten) -> None:
    c = client
    from dask import delayed

    total = delayed(add)(delayed(inc)(1), delayed(dec)(2))
    fut = c.compute(total)
    f = c.compute(_bag_res())
    assert c.gather([f, fut]) == [30, 3]
    keys = [f.key, fut.key]
    held = {k for ks in c.has_what().values() for k in ks}
    assert set(keys) <= held
    # seed 002: "To release the memory, all references to a future need to be deleted":
    del f, fut
    assert forgotten(keys), c.task_states()
    # nothing else of the two graphs stayed behind either
    assert not {k for ks in c.has_what().values() for k in ks}


# ---------------------------------------------------- "Asynchronous computation"


# seed 002: a simple function with interesting minima (0.1 s sleep -> 0.001 s)
def rosenbrock(point):
    """Compute the rosenbrock function and return the point and result"""
    time.sleep(0.001)
    score = (1 - point[0]) ** 2 + 2 * (point[1] - point[0] ** 2) ** 2
    return point, score


def test_asynchronous_computation_rosenbrock_search_with_as_completed_add(
    client: Client, forgotten
) -> None:
    c = client
    random_seed(1234)

    # seed 002, plot set-up cell: the background image, without bokeh
    N = 500
    x = np.linspace(-5, 5, N)
    y = np.linspace(-5, 5, N)
    xx, yy = np.meshgrid(x, y)
    d = (1 - xx) ** 2 + 2 * (yy - xx**2) ** 2
    d = np.log(d)
    assert d.shape == (N, N)

    # seed 002, search cell
    scale = 5  # Intial random perturbation scale
    best_point = (0, 0)  # Initial guess
    best_score = float("inf")  # Best score so far
    startx = [uniform(-scale, scale) for _ in range(10)]
    starty = [uniform(-scale, scale) for _ in range(10)]

    # set up plot: bokeh's ColumnDataSource replaced by a dict of lists
    source = {"x": list(startx), "y": list(starty), "c": ["grey"] * 10}

    # initial 10 random points
    futures = [c.submit(rosenbrock, (x, y)) for x, y in zip(startx, starty)]
    iterator = as_completed(futures)
    submitted_keys = [f.key for f in futures]

    seen = []
    iterations = 0
    for res in iterator:
        iterations += 1
        # take a completed point, is it an improvement?
        point, score = res.result()
        seen.append((point, score))
        if score < best_score:
            best_score, best_point = score, point
            print(score, point)

        x, y = best_point
        newx, newy = (x + uniform(-scale, scale), y + uniform(-scale, scale))

        # update plot: source.stream({...}, rollover=20); push_notebook(t)
        for k, v in (("x", newx), ("y", newy), ("c", "grey")):
            source[k] = (source[k] + [v])[-20:]

        # add new point, dynamically, to work on the cluster
        new_point = c.submit(rosenbrock, (newx, newy))
        iterator.add(new_point)  # Start tracking new task as well
        submitted_keys.append(new_point.key)

        # Narrow search and consider stopping
        scale *= 0.99
        if scale < 0.001:
            break
    point  # noqa: B018

    # the loop ran until scale < 0.001: only possible because .add() fed it new futures
    expected = 0
    s = 5.0
    while True:
        expected += 1
        s *= 0.99
        if s < 0.001:
            break
    assert iterations == expected > 10
    # every future taken from the iterator was finished, and each result is right
    assert all(r == rosenbrock(p)[1] for p, r in seen)
    assert best_score == min(r for _, r in seen)
    assert best_score == rosenbrock(best_point)[1]
    assert best_score <= min(rosenbrock(p)[1] for p in zip(startx, starty))
    assert len(source["x"]) == 20
    # 10 in flight at the start; each iteration took one and added one
    assert iterator.count() == 10
    assert new_point.key in {f.key for f in [*iterator._pending.values(), *iterator._ready]}

    # seed 002, "# clean up": del futures[:], new_point, iterator, res
    # (dropping the futures still in flight: the scheduler forgets them all)
    all_keys = {k for k in submitted_keys}
    del futures[:], new_point, iterator, res
    assert forgotten(all_keys), c.task_states()


def test_the_same_cells_with_an_asynchronous_client(cluster) -> None:  # type: ignore[no-untyped-def]
    # The notebook's title is "The async futures interface": its Client.submit / wait /
    # gather cells and the as_completed search loop, written with Client(asynchronous=True)
    import asyncio

    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            fut = c.submit(slow_inc, 1)
            assert fut.status == "pending"
            await wait(fut)
            assert fut.status == "finished"
            assert await fut == 2
            assert await c.gather(fut) == 2
            # the exercise: the delayed computation with submit
            x = c.submit(inc, 1)
            y = c.submit(dec, 2)
            total = c.submit(add, x, y)
            assert await c.gather(total) == 3
            # as_completed with `async for`, adding new points while iterating
            futures = [c.submit(rosenbrock, (i, i)) for i in range(3)]
            iterator = as_completed(futures)
            results = []
            async for res in iterator:
                _point, score = await res
                results.append(score)
                if len(results) <= 3:
                    iterator.add(c.submit(rosenbrock, (len(results), -len(results))))
            assert len(results) == 6
            assert sorted(results) == sorted(
                [rosenbrock((i, i))[1] for i in range(3)] + [rosenbrock((n, -n))[1] for n in (1, 2, 3)]
            )

    asyncio.run(asyncio.wait_for(main(), 30))
