"""dask collections computed and persisted on shoal."""

from __future__ import annotations

import pytest

from shoal import Client, Future

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
