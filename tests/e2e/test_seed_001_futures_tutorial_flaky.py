"""Seed 001: dask-tutorial "Futures - non-blocking distributed calculations",
2022 edition with the "Sporadically failing task" section
(/work/shared/seeds/001_6510bfece1999244.txt), cells [1] .. [17], with
``from dask.distributed`` -> ``from shoal`` and 1-2 s sleeps shortened to 0.01 s.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from random import random
from time import sleep

import pytest

from shoal import Client, wait

pytestmark = pytest.mark.timeout(60)

SEED = "001_6510bfece1999244.txt"
SLEEP = 0.01


# [2]
def inc(x):
    sleep(SLEEP)
    return x + 1


def double(x):
    sleep(SLEEP)
    return 2 * x


def add(x, y):
    sleep(SLEEP)
    return x + y


def slow_inc(x):
    sleep(0.2)
    return x + 1


def _text_of_html(markup: str) -> str:
    """What a notebook shows for an HTML repr: the text without the tags."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", markup)).split())


# ------------------------------------------------------------------------- [1]


def test_cell1_client_n_workers() -> None:
    # seed 001, [1]: client = Client(n_workers=4); client   (2 workers here: 2 cores)
    client = Client(n_workers=2)
    cluster = client.cluster
    try:
        assert client.status == "running"
        assert cluster.processes is True
        assert sorted(client.nthreads().values()) == [1, 1]  # 2 cores / 2 workers
        assert client.submit(add, 1, 2).result(timeout=10) == 3
    finally:
        client.close()
    # the cluster the client started goes away with it
    assert client.status == "closed"
    assert cluster.status == "closed"


# ------------------------------------------------------ "A Typical Workflow"


def test_typical_workflow_read_transform_write(client: Client, tmp_path: Path) -> None:
    # seed 001, "A Typical Workflow" (placeholders made real with files in tmp_path)
    (tmp_path / "results").mkdir()
    filenames = []
    for i in range(4):
        (tmp_path / f"in-{i}.csv").write_text(",".join(str(j) for j in range(i + 3)))
        filenames.append(f"in-{i}.csv")

    def read_a_file(filename):
        return [int(v) for v in (tmp_path / filename).read_text().split(",")]

    def do_a_transformation(data):
        return [v * v for v in data]

    def write_out_data(data, destination):
        (tmp_path / destination).write_text(",".join(map(str, data)))

    def process_file(filename):
        data = read_a_file(filename)
        data = do_a_transformation(data)
        destination = f"results/{filename}"
        write_out_data(data, destination)
        return destination

    futures = []
    for filename in filenames:
        future = client.submit(process_file, filename)
        futures.append(future)

    futures  # noqa: B018 - the cell shows the list of futures
    assert all(repr(f).startswith("<Future: process_file status: ") for f in futures)
    assert client.gather(futures) == [f"results/{name}" for name in filenames]
    for i, name in enumerate(filenames):
        written = (tmp_path / "results" / name).read_text()
        assert written == ",".join(str(j * j) for j in range(i + 3))


# ------------------------------------------------------------- [3] .. [6]


def test_cells3_to_6_submit_and_result(client: Client) -> None:
    # seed 001, [3]
    assert inc(1) == 2
    # seed 001, [4]: future = client.submit(inc, 1)  # returns immediately with pending future
    future = client.submit(inc, 1)
    assert future.status == "pending"
    assert re.fullmatch(r"inc-[0-9a-f]{32}", future.key), future.key
    # seed 001, [6]: future.result()
    assert future.result(timeout=10) == 2
    # seed 001, [5]: the future, checked again later, has finished
    assert future.status == "finished"
    assert future.type is int
    assert "status: finished" in repr(future)


def test_cell4_pending_future_html_repr_as_in_the_notebook(client: Client) -> None:
    # seed 001, [4]/[5] output:
    #   Future: inc status: pending, type: NoneType, key: inc-cdc8a98879bc6d18bd017529d9015f70
    future = client.submit(slow_inc, 1)
    text = _text_of_html(future._repr_html_())
    assert re.fullmatch(
        r"Future: slow_inc status: pending, type: NoneType, key: slow_inc-[0-9a-f]{32}", text
    ), text


def test_cell6_finished_future_html_repr(client: Client) -> None:
    # seed 001, [6] and the repr shown once the future finished
    future = client.submit(inc, 1)
    assert future.result(timeout=10) == 2
    text = _text_of_html(future._repr_html_())
    assert re.fullmatch(r"Future: inc status: finished, type: int, key: inc-[0-9a-f]{32}", text), text


# ---------------------------------------- "Other ways to wait / gather results"


def test_other_ways_to_wait_progress(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 001, "Other ways to wait for a future": from dask.distributed import wait, progress
    from shoal import progress

    futures = client.map(slow_inc, range(3))
    progress(futures)  # outside a notebook: a text bar, returning when all are done
    assert all(f.done() for f in futures)
    assert "100% Completed | 3/3" in capsys.readouterr().out


def test_other_ways_to_wait_wait(client: Client) -> None:
    # seed 001, "Other ways to wait for a future": wait(future)
    future = client.submit(slow_inc, 1)
    wait(future)
    assert future.status == "finished"
    # "if the result of inc() is sitting in the cluster, it would take no time"
    again = client.submit(slow_inc, 1)
    assert again.status == "finished"
    assert again.result(timeout=0.1) == 2


def test_other_ways_to_gather_results(client: Client) -> None:
    # seed 001, "Other ways to gather results": client.gather(futures)
    futures = client.map(double, range(6))
    assert client.gather(futures) == [0, 2, 4, 6, 8, 10]


# ----------------------------------------------------- client.compute, [7] .. [9]


def test_cells7_to_9_client_compute(client: Client) -> None:
    import dask

    # seed 001, [7]
    @dask.delayed
    def inc(x):
        sleep(SLEEP)
        return x + 1

    @dask.delayed
    def add(x, y):
        sleep(SLEEP)
        return x + y

    x = inc(1)
    y = inc(2)
    z = add(x, y)
    # seed 001, [8]: future = client.compute(z) -> Future: add status: pending, ...
    future = client.compute(z)
    assert future.status == "pending"
    assert repr(future).startswith("<Future: add status: pending")
    # seed 001, [9]
    assert future.result(timeout=10) == 5


# ----------------------------------------------------- client.submit, [10] .. [11]


def test_cells10_11_client_submit_dependencies(client: Client) -> None:
    # seed 001, [10]
    def inc(x):
        sleep(SLEEP)
        return x + 1

    future_x = client.submit(inc, 1)
    future_y = client.submit(inc, 2)
    future_z = client.submit(sum, [future_x, future_y])
    # [10] output: Future: sum status: pending, type: NoneType, key: sum-360394aa...
    assert re.fullmatch(r"sum-[0-9a-f]{32}", future_z.key), future_z.key
    # seed 001, [11]
    assert future_z.result(timeout=10) == 5


# ------------------------------------ "Example: Sporadically failing task", [12] ..


# seed 001, [12] verbatim (the notebook's flaky_inc: fails 20% of the time)
def flaky_inc(i):
    if random() < 0.2:
        raise ValueError("You hit the error!")
    return i + 1


def test_cells12_to_14_map_of_randomly_flaky_tasks(client: Client) -> None:
    # seed 001, [13]: futures = client.map(flaky_inc, range(10)) with the notebook's own
    # random flaky_inc; "Notice how the cell returned even though some of the
    # computations failed".  Which ones fail is random, so check that each future is
    # consistent with its status.
    futures = client.map(flaky_inc, range(10))
    wait(futures)
    # seed 001, [14]: for i, future in enumerate(futures): print(i, future.status)
    for i, future in enumerate(futures):
        assert future.status in ("finished", "error"), (i, future.status)
        if future.status == "finished":
            assert future.result() == i + 1
        else:
            with pytest.raises(ValueError, match="You hit the error!"):
                future.result()
            assert isinstance(future.exception(), ValueError)


def _make_flaky_inc(counter_dir: Path, failures: dict[int, int]):
    """flaky_inc whose 'random' failures are scripted: input ``i`` fails on its first
    ``failures[i]`` calls (counted in files, across worker processes), then succeeds."""

    def flaky_inc(i):
        with open(counter_dir / str(i), "ab") as f:
            f.write(b".")
        attempt = os.path.getsize(counter_dir / str(i))
        if attempt <= failures.get(i, 0):  # notebook: if random() < 0.2:
            raise ValueError("You hit the error!")
        return i + 1

    return flaky_inc


def _attempts(counter_dir: Path, i: int) -> int:
    p = counter_dir / str(i)
    return os.path.getsize(p) if p.exists() else 0


def test_cells13_to_17_inspect_retry_and_retries(client: Client, tmp_path: Path) -> None:
    # The same cells as the notebook, with flaky_inc failing in a scripted way: the
    # failures of [14]'s output (0, 2, 4, 6 fail; 5 too, to be retried in [15]) and an
    # input (8) that fails 6 times, so that [17] needs all of retries=5.
    failures = {0: 1, 2: 2, 4: 1, 5: 1, 6: 1, 8: 6}
    flaky_inc = _make_flaky_inc(tmp_path, failures)

    # seed 001, [13]
    futures = client.map(flaky_inc, range(10))
    wait(futures)
    # seed 001, [14]
    statuses = {i: future.status for i, future in enumerate(futures)}
    assert statuses == {i: "error" if i in failures else "finished" for i in range(10)}
    with pytest.raises(ValueError, match="You hit the error!"):
        futures[0].result()
    assert [futures[i].result() for i in (1, 3, 7, 9)] == [2, 4, 8, 10]

    # seed 001, [15]: futures[5].retry()
    futures[5].retry()
    assert futures[5].result(timeout=10) == 6
    # seed 001, [16]: only future 5 changed
    statuses = {i: future.status for i, future in enumerate(futures)}
    assert statuses == {i: "error" if i in failures and i != 5 else "finished" for i in range(10)}
    assert _attempts(tmp_path, 5) == 2

    # "Note: In this example we also need to set pure=False": without it the same
    # keys come back, already erred
    same = client.map(flaky_inc, range(10), retries=5)
    assert [f.key for f in same] == [f.key for f in futures]
    assert same[0].status == "error"
    del same

    # seed 001, [17]
    futures = client.map(flaky_inc, range(10), retries=5, pure=False)
    future_z = client.submit(sum, futures)
    assert future_z.result(timeout=30) == 55
    # input 8 failed once in [13] and 5 more times here: 1 + 5 retries = 6 runs in [17]
    assert _attempts(tmp_path, 8) == 7
    assert _attempts(tmp_path, 1) == 2  # no retry where none was needed


def test_cell17_retries_are_a_limit(client: Client, tmp_path: Path) -> None:
    # seed 001, [17] with one failure too many for retries=5: the error surfaces
    flaky_inc = _make_flaky_inc(tmp_path, {3: 6})
    futures = client.map(flaky_inc, range(10), retries=5, pure=False)
    future_z = client.submit(sum, futures)
    with pytest.raises(ValueError, match="You hit the error!"):
        future_z.result(timeout=30)
    assert futures[3].status == "error"
    assert _attempts(tmp_path, 3) == 6
    assert [f.status for i, f in enumerate(futures) if i != 3] == ["finished"] * 9
