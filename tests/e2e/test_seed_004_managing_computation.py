"""Seed 004: dask.distributed's "Managing Computation" page
(/work/shared/seeds/004_f96a23921c4ce9b4.txt), every code block.

The page's collection is ``dd.read_csv('s3://...')``; pandas is not installed
here, so the stand-in collection is a ``dask.bag`` read from text files in
tmp_path (the page's point, a lazy dask collection with partitions, is kept).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import dask  # noqa: F401  (imported before any Client, as a dask user does; see seed 000)
import pytest

from shoal import Client, Future, wait

pytestmark = pytest.mark.timeout(60)

SEED = "004_f96a23921c4ce9b4.txt"


def _csv_bag(tmp_path: Path):
    """Stand-in for ``df = dd.read_csv('s3://...')``: 4 files -> a bag of records."""
    import dask.bag as db

    for i in range(4):
        rows = "\n".join(f"{i * 10 + j},{(i * 10 + j) * 2}" for j in range(10))
        (tmp_path / f"part-{i}.csv").write_text("id,value\n" + rows + "\n")
    lines = db.read_text(str(tmp_path / "part-*.csv"))
    return lines.filter(lambda line: not line.startswith("id")).map(
        lambda line: dict(zip(("id", "value"), map(int, line.split(","))))
    )


EXPECTED_VALUE_SUM = sum(2 * k for k in range(40))


def _worker_pids(client: Client) -> set[int]:
    workers = list(client.scheduler_info()["workers"])
    return {client.submit(os.getpid, workers=[w], pure=False).result(timeout=10) for w in workers}


# ------------------------------------------------ "Dask Collections to Concrete Values"


def test_collection_compute_runs_on_the_cluster(client: Client, tmp_path: Path) -> None:
    # seed 004, "Dask Collections to Concrete Values":
    #   >>> df = dd.read_csv('s3://...')
    #   >>> df.value.sum().compute()
    df = _csv_bag(tmp_path)
    assert df.pluck("value").sum().compute() == EXPECTED_VALUE_SUM
    # with a distributed Client, .compute() runs on the cluster's workers
    pids = set(df.map(lambda _: os.getpid()).compute())
    assert pids <= _worker_pids(client), pids


# -------------------------------------------------- "Dask Collections to Futures"


def test_client_compute_returns_a_single_future(client: Client, tmp_path: Path) -> None:
    # seed 004, "client.compute":
    #   >>> total = client.compute(df.sum())  # Return a single future
    #   >>> total.result()               # Block until finished
    df = _csv_bag(tmp_path)
    total = client.compute(df.pluck("value").sum())
    assert isinstance(total, Future)
    assert total.result(timeout=10) == EXPECTED_VALUE_SUM


def test_client_persist_returns_collection_of_futures(client: Client, tmp_path: Path) -> None:
    # seed 004, "client.persist":
    #   >>> df = client.persist(df)               # Start computation
    #   >>> df.dask                          # Now points to running futures
    df = _csv_bag(tmp_path)
    df = client.persist(df)
    values = list(dict(df.dask).values())
    assert len(values) == df.npartitions == 4
    assert all(isinstance(v, Future) for v in values)
    # "Eventually all of the futures of this collection will be completed", their data
    # held on the workers; "further queries on this collection will likely be very fast"
    wait(values, timeout=10)
    assert {v.status for v in values} == {"finished"}
    assert set(client.who_has(values)) == {v.key for v in values}
    assert all(client.who_has(values)[v.key] for v in values)
    assert df.pluck("value").sum().compute() == EXPECTED_VALUE_SUM
    assert sorted(r["id"] for r in df.compute()) == list(range(40))


# -------------------------------------------------- "Concrete Values to Futures"


def function(a, b, *, scale=1, offset=0):
    return (a + b) * scale + offset


def test_concrete_values_to_futures_scatter_submit_map(client: Client) -> None:
    # seed 004, "Concrete Values to Futures":
    #   futures = client.scatter(args)                        # Send data
    #   future = client.submit(function, *args, **kwargs)     # Send single task
    #   futures = client.map(function, sequence, **kwargs)    # Send many tasks
    args = [1, 2]
    kwargs = {"scale": 10, "offset": 3}
    futures = client.scatter(args)  # Send data
    assert isinstance(futures, list) and all(isinstance(f, Future) for f in futures)
    assert [f.status for f in futures] == ["finished", "finished"]
    future = client.submit(function, *args, **kwargs)  # Send single task
    assert future.result(timeout=10) == 33
    sequence = range(5)
    futures = client.map(function, sequence, sequence, **kwargs)  # Send many tasks
    assert client.gather(futures) == [(2 * i) * 10 + 3 for i in range(5)]


def test_args_and_kwargs_may_be_values_or_futures(client: Client) -> None:
    # seed 004: "*args or **kwargs can be normal Python objects, like 1 or 'hello', or
    # they can be other Future objects if you want to link tasks together"
    one = client.scatter(1)
    hello = client.submit(str.upper, "hello")
    assert client.submit(lambda a, s: f"{s}{a}", one, s=hello).result(timeout=10) == "HELLO1"
    assert client.submit(function, one, 2, scale=one, offset=client.submit(function, 1, 1)).result(
        timeout=10
    ) == 3 * 1 + 2
    # the scattered values are futures too, usable in map
    futures = client.scatter([1, 2, 3])
    assert client.gather(client.map(function, futures, [10, 20, 30])) == [11, 22, 33]


# -------------------------------------------------- "Futures to Concrete Values"


def test_futures_to_concrete_values(client: Client) -> None:
    # seed 004, "Futures to Concrete Values":
    #   >>> future.result()
    #   1
    #   >>> client.gather(futures)
    #   [1, 2, 3, 4, ...]
    future = client.submit(abs, -1)
    assert future.result() == 1
    futures = client.map(abs, [-1, -2, -3, -4, -5, -6])
    assert client.gather(futures) == [1, 2, 3, 4, 5, 6]


# -------------------------------------------------- "Futures to Dask Collections"


def test_futures_inside_delayed_then_client_compute(client: Client) -> None:
    # seed 004, "Futures to Dask Collections":
    #   >>> x = delayed(sum)(futures)
    #   >>> y = delayed(product)(futures)
    #   >>> future = client.compute(x + y)
    from dask import delayed

    product = math.prod
    futures = client.map(abs, [-1, -2, -3, -4])
    x = delayed(sum)(futures)
    y = delayed(product)(futures)
    future = client.compute(x + y)
    assert future.result(timeout=10) == (1 + 2 + 3 + 4) + (1 * 2 * 3 * 4)
