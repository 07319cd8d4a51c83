"""Seed 000: dask-tutorial "Futures - non-blocking distributed calculations"
(/work/shared/seeds/000_c20725d3bbcf1ac3.txt), cells In [1] .. In [11] and the
code blocks between them, with ``from dask.distributed`` -> ``from shoal`` and
sleeps of 1-2 s shortened to 0.01 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from time import sleep

import pytest

from shoal import Client, Future, LocalCluster, wait

from ..conftest import token_env

pytestmark = pytest.mark.timeout(60)

SEED = "000_c20725d3bbcf1ac3.txt"
SLEEP = 0.01  # the notebook sleeps 1 s (inc, add) and 2 s (double)


# In [2]: toy functions that sleep to simulate work
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


# --------------------------------------------------------------------- In [1]


def test_cell1_client_with_n_workers_starts_a_local_cluster() -> None:
    # seed 000, In [1]: client = Client(n_workers=4); client   (2 workers here: 2 cores)
    client = Client(n_workers=2)
    try:
        assert client.status == "running"
        assert isinstance(client.cluster, LocalCluster)
        assert client.cluster.processes is True  # "Using processes: True"
        assert len(client.scheduler_info()["workers"]) == 2
        assert "processes=2" in repr(client)  # dask's: <Client: 'tcp://...' processes=4 threads=4, ...>
        # what the notebook shows (the HTML's text): "Dashboard: http://127.0.0.1:8787/status"
        shown = " ".join(re.sub(r"<[^>]+>", " ", client._repr_html_()).split())
        assert "Workers: 2" in shown
        assert f"Dashboard: {client.dashboard_link}" in shown
        assert "Connection method: Cluster object" in shown
        assert client.dashboard_link.endswith("/status")
        assert client.submit(inc, 1).result(timeout=10) == 2
    finally:
        client.close()
    assert client.status == "closed"


# ------------------------------------------------------- "A Typical Workflow"


def test_typical_workflow_read_transform_write(client: Client, tmp_path: Path) -> None:
    # seed 000, "A Typical Workflow": process_file over filenames with client.submit.
    # read_a_file / do_a_transformation / write_out_data are placeholders in the
    # notebook; here they are real files under tmp_path.
    data_dir = tmp_path / "data"
    results_dir = tmp_path / "results"
    data_dir.mkdir()
    results_dir.mkdir()
    filenames = []
    for i in range(5):
        name = f"file-{i}.txt"
        (data_dir / name).write_text(f"line {i}\nsecond line of {i}\n")
        filenames.append(name)

    def read_a_file(filename):
        return (data_dir / filename).read_text()

    def do_a_transformation(data):
        return data.upper()

    def write_out_data(data, destination):
        Path(destination).write_text(data)

    def process_file(filename):
        data = read_a_file(filename)
        data = do_a_transformation(data)
        destination = f"{results_dir}/{filename}"  # notebook: f"results/{filename}"
        write_out_data(data, destination)
        return destination

    futures = []
    for filename in filenames:
        future = client.submit(process_file, filename)
        futures.append(future)

    assert all(isinstance(f, Future) for f in futures)
    assert len({f.key for f in futures}) == 5  # one task per file
    destinations = client.gather(futures)
    assert destinations == [f"{results_dir}/{name}" for name in filenames]
    for i, name in enumerate(filenames):
        assert (results_dir / name).read_text() == f"LINE {i}\nSECOND LINE OF {i}\n"
    assert all(f.status == "finished" for f in futures)


# ----------------------------------------------------------- In [3] .. In [6]


def test_cells3_to_6_submit_returns_pending_future_then_result(client: Client) -> None:
    # seed 000, In [3]: inc(1) locally
    assert inc(1) == 2
    # seed 000, In [4]: future = client.submit(inc, 1)  # returns immediately with pending future
    future = client.submit(inc, 1)
    assert future.status == "pending"
    assert not future.done()
    assert repr(future).startswith("<Future: inc status: pending")
    assert re.search(r"key: inc-[0-9a-f]{32}>$", repr(future)), repr(future)
    # seed 000, In [6]: future.result()
    assert future.result(timeout=10) == 2
    # seed 000, In [5]: "if you wait a second ... you'll see that it has finished"
    assert future.status == "finished"
    assert future.done()
    assert re.fullmatch(
        r"<Future: inc status: finished, type: int, key: inc-[0-9a-f]{32}>", repr(future)
    ), repr(future)


# ---------------------------------------------- "Other ways to wait for a future"


def test_other_ways_to_wait_progress(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 000, "Other ways to wait for a future": from dask.distributed import wait, progress
    from shoal import progress

    future = client.submit(slow_inc, 1)
    progress(future)  # outside a notebook: a text bar, returning when the future is done
    assert future.done()
    assert "100% Completed | 1/1" in capsys.readouterr().out
    assert future.result(timeout=0) == 2


def test_other_ways_to_wait_wait_blocks_until_done(client: Client) -> None:
    # seed 000, "Other ways to wait for a future": wait(future)
    future = client.submit(slow_inc, 1)
    assert future.status == "pending"
    done, not_done = wait(future)
    assert future.status == "finished"
    assert done == {future} and not_done == set()
    assert future.result(timeout=0) == 2


def test_other_ways_to_wait_known_result_takes_no_time(client: Client) -> None:
    # seed 000, "Other ways to wait for a future": "if the result of inc() is sitting in
    # the cluster, it would take no time to execute the computation now, because Dask
    # notices that we are asking for the result of a computation it already knows about"
    future = client.submit(slow_inc, 10)
    wait(future)
    again = client.submit(slow_inc, 10)
    assert again.key == future.key
    assert again.status == "finished"  # done at once: no second 0.2 s run
    done, _ = wait(again, timeout=0.1)
    assert done == {again}
    assert again.result(timeout=0.1) == 11


def test_other_ways_to_gather_results(client: Client) -> None:
    # seed 000, "Other ways to gather results": client.gather(futures)
    futures = [client.submit(inc, i) for i in range(10)]
    assert client.gather(futures) == list(range(1, 11))


# ------------------------------------------------ "client.compute", In [7] .. In [9]


def test_cells7_to_9_client_compute_of_delayed(client: Client) -> None:
    import dask

    # seed 000, In [7]
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
    # seed 000, In [8]: "notice that this cell completes immediately"
    future = client.compute(z)
    assert isinstance(future, Future)
    assert future.status == "pending"
    assert repr(future).startswith("<Future: add status: pending")
    # seed 000, In [9]: future.result()  # waits until result is ready
    assert future.result(timeout=10) == 5
    assert future.status == "finished"


# In [1] creates the client, In [7] imports dask, In [8] says "notice the difference
# from z.compute()": with a client, z.compute() runs on the cluster too (blocking).
NOTEBOOK_ORDER = """
import os, sys
from shoal import Client
client = Client(sys.argv[1])          # In [1] (connected to the test's cluster)
import dask                           # In [7]

@dask.delayed
def where():
    return os.getpid()

print("local" if where().compute() == os.getpid() else "cluster")   # z.compute()
print("local" if client.compute(where()).result() == os.getpid() else "cluster")
client.close()
"""


def test_cells1_and_7_dask_compute_after_client_runs_on_the_cluster(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-c", NOTEBOOK_ORDER, cluster.scheduler_address],
        capture_output=True, text=True, timeout=50, cwd=tmp_path, env=token_env(cluster),
    )
    assert proc.returncode == 0, proc.stderr
    compute_ran, client_compute_ran = proc.stdout.split()
    assert client_compute_ran == "cluster"
    assert compute_ran == "cluster"


# ------------------------------------------------ "client.submit", In [10] .. In [11]


def test_cells10_11_submit_with_future_arguments(client: Client) -> None:
    # seed 000, In [10]
    def inc(x):
        sleep(SLEEP)
        return x + 1

    future_x = client.submit(inc, 1)
    future_y = client.submit(inc, 2)
    future_z = client.submit(sum, [future_x, future_y])
    assert repr(future_z).startswith("<Future: sum status: ")
    # seed 000, In [11]: future_z.result()  # waits until result is ready
    assert future_z.result(timeout=10) == 5
    assert future_x.status == future_y.status == "finished"


def test_toy_functions_double_and_add_chain(client: Client) -> None:
    # seed 000, In [2]: double and add, chained through futures as the text describes
    # ("new work can be assigned to work on the output of previous jobs that haven't
    # even begun yet")
    a = client.submit(inc, 1)
    b = client.submit(double, a)
    c = client.submit(add, a, b)
    assert c.result(timeout=10) == 2 + 4


def test_how_does_it_work_unreferenced_values_are_forgotten(client: Client, forgotten) -> None:
    # seed 000, "How does it work?": "when a future is no longer referenced, its value
    # is forgotten" / "These results would not need to be re-evaluated if we chose to
    # submit more work that needed them."
    future_x = client.submit(inc, 100)
    future_y = client.submit(inc, 200)
    future_z = client.submit(sum, [future_x, future_y])
    assert future_z.result(timeout=10) == 302
    keys = [future_x.key, future_y.key, future_z.key]
    assert set(client.who_has([future_x, future_y, future_z])) == set(keys)
    # more work on a held result reuses it
    more = client.submit(add, future_z, 1)
    assert more.result(timeout=10) == 303
    del future_x, future_y, future_z, more
    assert forgotten(keys), client.task_states()
