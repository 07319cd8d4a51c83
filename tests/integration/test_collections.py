"""dask collections computed and persisted on shoal."""

from __future__ import annotations

import pytest

from shoal import Client, Future, futures_of, wait

dask = pytest.importorskip("dask")
from dask import delayed  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def test_compute_delayed_returns_a_future(client: Client) -> None:
    z = delayed(add)(delayed(inc)(1), delayed(inc)(2))
    f = client.compute(z)
    assert isinstance(f, Future)
    assert f.result(timeout=20) == 5
    assert client.compute([z, delayed(inc)(10)], sync=True) == [5, 11]


def test_bag_pipeline(client: Client) -> None:
    import dask.bag as db

    res = db.from_sequence(range(10), npartitions=3).map(inc).filter(lambda x: x % 2 == 0).sum()
    assert client.compute(res).result(timeout=20) == 30


def test_dask_compute_runs_on_the_default_client(client: Client) -> None:
    z = delayed(add)(delayed(inc)(1), 10)
    assert dask.compute(z) == (12,)
    # the client's scheduler is really used: the key is known to the scheduler afterwards
    f = client.compute(z)
    assert f.result(timeout=20) == 12


def test_delayed_over_futures(client: Client) -> None:
    futures = client.map(inc, range(5))
    total = delayed(sum)(futures)
    assert client.compute(total).result(timeout=20) == 15


def test_persist_array_keeps_results_on_workers(client: Client) -> None:
    da = pytest.importorskip("dask.array")
    pytest.importorskip("numpy")
    a = client.persist(da.ones((40, 40), chunks=(10, 10)) * 2)
    futures = [v for v in dict(a.__dask_graph__()).values() if isinstance(v, Future)]
    assert len(futures) == 16
    client.gather(futures)
    held = {k for keys in client.has_what().values() for k in keys}
    assert {f.key for f in futures} <= held
    assert a.sum().compute() == 3200
    assert client.compute(a.sum()).result(timeout=20) == 3200


# -- tokenizing, persisting dataframes and arrays ---------------------------------------


def test_futures_tokenize_by_key(client: Client) -> None:
    from dask.base import tokenize

    f = client.submit(inc, 1)
    same = Future(f.key, client)
    other = client.submit(inc, 2)
    with dask.config.set({"tokenize.ensure-deterministic": True}):
        assert tokenize(f) == tokenize(same) == tokenize(Future(f.key, client))
        assert tokenize(f) != tokenize(other)
        assert tokenize([f, {"a": other}]) == tokenize([same, {"a": other}])


def test_persisted_dataframe_is_usable_as_a_dataframe(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    from dask.base import tokenize

    pdf = pd.DataFrame({"x": range(40), "y": [i % 3 for i in range(40)]})
    with dask.config.set({"tokenize.ensure-deterministic": True}):
        df = client.persist(dd.from_pandas(pdf, npartitions=4))
        assert tokenize(df) == tokenize(df)
    assert len(futures_of(df)) == 4
    pd.testing.assert_frame_equal(df.compute(), pdf)
    assert df.x.sum().compute() == pdf.x.sum()
    assert client.compute(df.x.mean()).result(timeout=20) == pdf.x.mean()
    assert len(df[df.x > 9]) == 30
    grouped = client.compute(df.groupby("y").x.sum(), sync=True)
    pd.testing.assert_series_equal(grouped.sort_index(), pdf.groupby("y").x.sum())
    # persisting what was persisted, after more operations, works too
    again = client.persist(df.assign(z=df.x * 2))
    assert again.z.sum().compute() == 2 * pdf.x.sum()


def test_persisted_array_further_operations(client: Client) -> None:
    da = pytest.importorskip("dask.array")
    np = pytest.importorskip("numpy")

    a = client.persist(da.arange(100, chunks=10).reshape((10, 10)).rechunk((5, 5)))
    expected = np.arange(100).reshape((10, 10))
    assert (a.compute() == expected).all()
    assert (a + a.T).sum().compute() == (expected + expected.T).sum()
    assert client.compute(a.mean(axis=0)).result(timeout=20).tolist() == expected.mean(axis=0).tolist()
    b = client.persist(a * 2)
    assert b.sum().compute() == 2 * expected.sum()


# -- futures_of, wait ------------------------------------------------------------------


def test_futures_of_collections_and_nested_containers(client: Client) -> None:
    import shoal

    db = pytest.importorskip("dask.bag")
    bag = client.persist(db.from_sequence(range(12), npartitions=3).map(inc))
    fs = futures_of(bag)
    assert len(fs) == 3 and all(isinstance(f, Future) for f in fs)
    assert client.futures_of(bag) == fs
    assert shoal.futures_of is futures_of
    a, b = client.submit(inc, 1), client.submit(inc, 2)
    assert futures_of([a, (b, {"k": a})]) == [a, b]
    assert set(futures_of({"bag": bag, "more": [b]})) == {*fs, b}
    assert futures_of([1, "x", None]) == []


def test_futures_of_with_client_refuses_cancelled(client: Client) -> None:
    from shoal import CancelledError

    f = client.submit(inc, 1, pure=False)
    f.cancel()
    assert futures_of([f]) == [f]
    with pytest.raises(CancelledError):
        client.futures_of([f])


def test_wait_on_a_persisted_collection(client: Client) -> None:
    db = pytest.importorskip("dask.bag")
    bag = client.persist(db.from_sequence(range(12), npartitions=4).map(inc))
    done, not_done = wait(bag, timeout=20)
    assert not not_done
    assert done == set(futures_of(bag)) and len(done) == 4
    assert all(f.status == "finished" for f in done)


# -- where and how the graph's tasks run ------------------------------------------------


def _workers(client: Client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def _holders(client: Client, futures: list[Future]) -> set[str]:
    wait(futures, timeout=20)
    return {w for ws in client.who_has(futures).values() for w in ws}


def test_persist_on_named_workers(client: Client) -> None:
    db = pytest.importorskip("dask.bag")
    w1, w2 = _workers(client)
    for start, target, expected in ((0, w1, w1), (100, [w2], w2)):
        data = db.from_sequence(range(start, start + 8), npartitions=4).map(inc)
        bag = client.persist(data, workers=target)
        assert _holders(client, futures_of(bag)) == {expected}


def test_workers_and_resources_as_dicts_of_collections(client: Client, wait_until) -> None:
    db = pytest.importorskip("dask.bag")
    w1, w2 = _workers(client)
    x = db.from_sequence(range(6), npartitions=3).map(inc)
    y = db.from_sequence(range(60, 66), npartitions=3).map(inc)
    px, py = client.persist([x, y], workers={x: w1, y: [w2]}, optimize_graph=False)
    assert _holders(client, futures_of(px)) == {w1}
    assert _holders(client, futures_of(py)) == {w2}
    # a resource no worker has: only the tasks it names wait for one
    gx, gy = client.persist([x.map(inc), y.map(inc)], resources={x.map(inc): {"GPU": 1}},
                            optimize_graph=False)
    assert wait(gy, timeout=20).not_done == set()
    keys = [f.key for f in futures_of(gx)]
    assert wait_until(lambda: set(client.task_states(keys).values()) == {"no-worker"})
    with pytest.raises(ValueError, match="not a task of the graph"):
        client.compute(x.sum(), workers={("no-such-key", 0): w1})


def test_resources_for_every_task_and_from_dask_annotate(client: Client, wait_until) -> None:
    f = client.compute(delayed(inc)(100), resources={"GPU": 1})
    assert wait_until(lambda: client.task_states([f.key])[f.key] == "no-worker")
    with dask.annotate(resources={"GPU": 1}):
        g = delayed(inc)(200)
    fg = client.compute(g)
    assert wait_until(lambda: client.task_states([fg.key])[fg.key] == "no-worker")
    # allow_other_workers lets a restricted task run elsewhere
    h = client.compute(delayed(inc)(300), workers=["tcp://127.0.0.1:1"], allow_other_workers=True)
    assert h.result(timeout=20) == 301


def flaky(path: str, fail_times: int) -> int:
    from pathlib import Path

    counter = Path(path)
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"attempt {n}")
    return n


def test_retries_per_graph_and_per_collection(client: Client, tmp_path) -> None:
    ok = delayed(flaky)(str(tmp_path / "a"), 2)
    assert client.compute(ok, retries=2).result(timeout=20) == 2
    failing = delayed(flaky, pure=False)(str(tmp_path / "b"), 2)
    with pytest.raises(RuntimeError, match="attempt 0"):
        client.compute(failing).result(timeout=20)
    per_key = delayed(flaky, pure=False)(str(tmp_path / "c"), 1)
    assert client.compute(per_key, retries={per_key: 1}).result(timeout=20) == 1


def test_priority_reaches_the_scheduler(client: Client) -> None:
    low = client.compute(delayed(inc)(1000), priority=-5)
    high = client.compute(delayed(inc)(2000), priority=10)
    plain = client.compute(delayed(inc)(3000))
    wait([low, high, plain], timeout=20)

    def priorities(dask_scheduler, keys):
        return [dask_scheduler.state.tasks[k].priority for k in keys]

    p_low, p_high, p_plain = client.run_on_scheduler(priorities, keys=[low.key, high.key, plain.key])
    assert p_high < p_plain < p_low  # smaller runs first


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


def test_actors_keyword(client: Client) -> None:
    from shoal.client.actor import Actor

    counter = client.compute(delayed(Counter)(), actors=True).result(timeout=20)
    assert isinstance(counter, Actor)
    assert counter.increment().result() == 1
    assert counter.increment().result() == 2
    c2 = delayed(Counter)()
    by_dict = client.compute(c2, actors={c2: True}).result(timeout=20)
    assert by_dict.increment().result() == 1


def test_keywords_are_checked_never_ignored(client: Client) -> None:
    x = delayed(inc)(1)
    assert client.compute(x, fifo_timeout="1s").result(timeout=20) == 2
    with pytest.raises(ValueError):
        client.compute(x, fifo_timeout="soon")
    with pytest.raises(TypeError, match="allow_other_workers"):
        client.compute(x, allow_other_workers="yes")
    with pytest.raises(TypeError, match="retries"):
        client.compute(x, retries=-1)
    with pytest.raises(TypeError, match="resources"):
        client.compute(x, resources=["GPU"])
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.compute(x, no_such_option=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.persist(x, no_such_option=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.get({"x": (inc, 1)}, "x", no_such_option=1)


def test_compute_traverse(client: Client) -> None:
    futures = client.compute([[delayed(inc)(1), 5], 7])
    assert futures[0].result(timeout=20) == [2, 5]
    assert futures[1] == 7
    untouched = client.compute([[delayed(inc)(1), 5]], traverse=False)
    assert isinstance(untouched[0], list)


def test_get_with_dask_keywords(client: Client) -> None:
    w1, _ = _workers(client)
    dsk = {"x": (inc, 1), "y": (add, "x", 10), "z": (add, "y", "x")}
    assert client.get(dsk, "y") == 12
    assert client.get(dsk, ["x", ["z"]]) == [2, [14]]
    futures = client.get(dsk, ["y", "z"], [w1], sync=False)  # workers positionally, as in dask
    assert all(isinstance(f, Future) for f in futures)
    assert client.gather(futures) == [12, 14]
    assert _holders(client, futures) == {w1}
    assert client.get(dsk, "z", retries=1, priority=3, resources=None, actors=False) == 14


def where() -> str:
    from shoal import get_worker

    return get_worker().address


def test_dask_compute_with_client_as_scheduler(client: Client) -> None:
    x = delayed(where, pure=False)()
    (addr,) = dask.compute(x, scheduler=client)
    assert addr in _workers(client)
    with dask.config.set(scheduler=client):
        (addr2,) = dask.compute(delayed(where, pure=False)())
    assert addr2 in _workers(client)
    # no scheduler named: the running default client
    (addr3,) = dask.compute(delayed(where, pure=False)())
    assert addr3 in _workers(client)


def test_dask_persist_on_the_default_client(client: Client) -> None:
    db = pytest.importorskip("dask.bag")
    (bag,) = dask.persist(db.from_sequence(range(6), npartitions=2).map(inc))
    fs = futures_of(bag)
    assert len(fs) == 2 and all(f.client is client for f in fs)
    assert sorted(bag.compute()) == list(range(1, 7))


def test_asynchronous_client_computes_and_persists(cluster) -> None:
    import asyncio

    da = pytest.importorskip("dask.array")

    async def main() -> None:
        async with Client(cluster, asynchronous=True, set_as_default=False) as c:
            assert await c.compute(delayed(add)(delayed(inc)(1), 2)) == 4
            first, second = c.compute([delayed(inc)(5), delayed(inc)(6)])
            assert await c.gather([first, second]) == [6, 7]
            assert await c.compute(delayed(inc)(7), sync=True) == 8
            a = c.persist(da.ones((8, 8), chunks=4))
            done, _ = await wait(a)
            assert len(done) == 4
            assert await c.compute(a.sum()) == 64
            assert await c.get({"x": (inc, 1)}, "x") == 2

    asyncio.run(main())


def compute_inside(n: int) -> int:
    from shoal import get_client

    client = get_client()
    a, b = f"a-{n}", f"b-{n}"  # a key names one task, as in dask
    return client.get({a: (inc, n), b: (add, a, a)}, b)


def test_get_from_inside_a_task_secedes(client: Client) -> None:
    # two single-threaded workers, four tasks each computing a graph: without
    # leaving the thread pool while they wait, they would hold every thread
    futures = client.map(compute_inside, range(4))
    assert client.gather(futures) == [2 * (n + 1) for n in range(4)]


def test_normalize_collection_reuses_futures_this_client_holds(client: Client) -> None:
    da = pytest.importorskip("dask.array")
    x = da.arange(20, chunks=5) + 1
    y = (x * 2).sum()
    held = client.persist(x)  # x's chunks are futures now, under x's keys
    wait(held)
    normalized = client.normalize_collection(y)
    graph = dict(normalized.__dask_graph__())
    assert len(graph) < len(dict(y.__dask_graph__()))  # arange's tasks are gone
    assert all(isinstance(graph[k], Future) for k in x.__dask_keys__())
    assert client.compute(normalized).result(timeout=10) == int((x * 2).sum().compute(scheduler="sync"))
    fresh = da.ones(4, chunks=2)
    assert client.normalize_collection(fresh) is fresh  # nothing held: the same object
    with pytest.raises(TypeError, match="dask collection"):
        client.normalize_collection([1, 2])
