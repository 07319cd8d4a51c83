"""Looking inside a running cluster of real processes: task stream, profile,
call stacks, logs, metadata, versions, sizes, cluster dumps, benchmarks."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal import Client, LocalCluster, get_task_stream, wait
from shoal.diagnostics.cluster_dump import load


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise ValueError(x)


def blob(n: int) -> bytes:
    return b"x" * n


def first_byte(b: bytes) -> int:
    return b[0]


def spin_in_busy(seconds: float) -> int:
    return busy(seconds)


def busy(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def wait_for_file(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.005)
    return path


def warn_from_task(text: str) -> str:
    logging.getLogger("user.code").warning(text)
    return text


# ---------------------------------------------------------------------- task stream


def test_task_stream_block_collects_each_run(client: Client) -> None:
    with get_task_stream(client) as ts:
        futures = client.map(inc, range(5), pure=False)
        bad = client.submit(fail, 1)
        wait([*futures, bad])
    workers = set(client.nthreads())
    by_key = {r["key"]: r for r in ts.data}
    assert set(by_key) == {f.key for f in futures} | {bad.key}
    for f in futures:
        r = by_key[f.key]
        assert r["status"] == "OK" and r["nbytes"] > 0 and r["type"] == "int"
        assert r["worker"] in workers and isinstance(r["thread"], int)
        (compute,) = r["startstops"]
        assert compute["action"] == "compute" and compute["start"] <= compute["stop"]
    assert by_key[bad.key]["status"] == "error"
    assert "nbytes" not in by_key[bad.key]


def test_task_stream_window_and_count(client: Client) -> None:
    a = client.map(inc, range(3), pure=False)
    wait(a)
    b = client.map(inc, range(4), pure=False)
    wait(b)
    records = client.get_task_stream()
    ends = {r["key"]: max(s["stop"] for s in r["startstops"]) for r in records}
    cut = (max(ends[f.key] for f in a) + min(ends[f.key] for f in b)) / 2
    after = client.get_task_stream(start=cut)
    assert {r["key"] for r in after} == {f.key for f in b}
    before = client.get_task_stream(stop=cut, count=3)
    assert {r["key"] for r in before} == {f.key for f in a}
    assert len(client.get_task_stream(count=2)) == 2
    assert [r["key"] for r in client.get_task_stream(start=cut, count=1)] == \
        [r["key"] for r in after[:1]]
    assert client.get_task_stream(start="1h") and client.get_task_stream(start=time.time() + 3600) == []


def test_task_stream_shows_a_dependency_transfer(client: Client) -> None:
    w0, w1 = sorted(client.nthreads())
    big = client.submit(blob, 100_000, workers=[w0])  # too big to travel with its notice
    wait([big], timeout=10)  # its own run is not part of what the block records
    with get_task_stream(client) as ts:
        assert client.submit(first_byte, big, workers=[w1]).result() == ord("x")
    (record,) = ts.data
    actions = [s["action"] for s in record["startstops"]]
    assert actions == ["transfer", "compute"]
    assert record["startstops"][0]["source"] == w0 and record["worker"] == w1


def test_task_stream_saved_as_html(client: Client, tmp_path: Path) -> None:
    wait(client.map(inc, range(3), pure=False))
    target = tmp_path / "stream.html"
    records, figure = client.get_task_stream(count=3, plot="save", filename=str(target))
    assert len(records) == 3 and figure is None
    assert target.read_text().count("<svg") == 4  # the chart and a box per run
    with get_task_stream(client, plot="save", filename=str(tmp_path / "block.html")) as ts:
        client.submit(inc, 1, pure=False).result()
    assert len(ts.data) == 1 and (tmp_path / "block.html").exists() and ts.figure is None
    with pytest.raises(NotImplementedError, match="bokeh"):
        client.get_task_stream(plot=True)
    with pytest.raises(NotImplementedError, match="bokeh"):
        get_task_stream(client, plot=True)
    with pytest.raises(ValueError, match="count"):
        client.get_task_stream(count=-1)
    with pytest.raises(TypeError, match="unix time"):
        client.get_task_stream(start=[1])


# ---------------------------------------------------------------------- profile, call stack


@pytest.mark.timeout(90)
def test_profile_samples_running_tasks(client: Client, tmp_path: Path,
                                       wait_until: Callable[..., bool]) -> None:
    client.submit(spin_in_busy, 0.3, pure=False).result()

    def sampled() -> bool:
        return bool(client.profile(key="spin_in_busy")["count"] > 0)

    assert wait_until(sampled, timeout=30)
    tree = client.profile(key="spin_in_busy")
    (top,) = tree["children"].values()
    assert top["description"]["name"] == "spin_in_busy"
    assert any(c["description"]["name"] == "busy" for c in top["children"].values())
    assert client.profile(key="no_such_function")["count"] == 0
    assert client.profile()["count"] >= tree["count"]
    assert client.profile(start=time.time() + 3600)["count"] == 0
    per_worker = client.profile(merge_workers=False)
    assert set(per_worker) == set(client.nthreads())
    one = sorted(per_worker)[0]
    assert set(client.profile(workers=[one], merge_workers=False)) == {one}
    page = tmp_path / "profile.html"
    state, figure = client.profile(key="spin_in_busy", filename=str(page))
    assert figure is None and state["count"] >= tree["count"]
    assert "spin_in_busy" in page.read_text()
    with pytest.raises(NotImplementedError, match="bokeh"):
        client.profile(plot=True)
    with pytest.raises(ValueError, match="no worker"):
        client.profile(workers=["tcp://nowhere:1"])


def test_profile_of_event_loops_starts_when_first_asked(
        client: Client, wait_until: Callable[..., bool]) -> None:
    client.profile(server=True)
    client.profile(scheduler=True)
    assert wait_until(lambda: client.profile(server=True)["count"] > 0, timeout=20)
    assert wait_until(lambda: client.profile(scheduler=True)["count"] > 0, timeout=20)


def test_call_stack_of_a_running_task(client: Client, tmp_path: Path,
                                      wait_until: Callable[..., bool]) -> None:
    go = tmp_path / "go"
    waiting = client.submit(wait_for_file, str(go), pure=False)
    after = client.submit(len, waiting)  # its call stack is the one it waits for

    def found() -> bool:
        return bool(client.call_stack(waiting))

    try:
        assert wait_until(found, timeout=20)
        ((worker, stacks),) = client.call_stack([after]).items()
        assert list(stacks) == [waiting.key]
        assert any("in wait_for_file" in line for line in stacks[waiting.key])
        assert worker in client.call_stack()
        assert client.call_stack(keys=["no-such-key"]) == {}
    finally:
        go.touch()
    assert after.result() == len(str(go))
    assert wait_until(lambda: client.call_stack(waiting) == {}, timeout=10)


# ---------------------------------------------------------------------- logs


def test_scheduler_and_worker_logs(client: Client, wait_until: Callable[..., bool]) -> None:
    lines = client.get_scheduler_logs()
    assert any("joined" in text for _, text in lines)
    assert all(isinstance(line, tuple) and len(line) == 2 for line in lines)
    assert len(client.get_scheduler_logs(n=1)) == 1
    worker = sorted(client.nthreads())[0]
    client.submit(warn_from_task, "hello from a task", workers=[worker], pure=False).result()
    logs = client.get_worker_logs()
    assert set(logs) == set(client.nthreads())
    texts = [text for _, text in logs[worker]]
    connected = next(i for i, t in enumerate(texts) if "connected to" in t)
    hello = next(i for i, t in enumerate(texts) if t.endswith("hello from a task"))
    assert hello < connected  # newest first
    assert logs[worker][hello][0] == "WARNING"
    assert set(client.get_worker_logs(n=1, workers=[worker])) == {worker}
    with pytest.raises(NotImplementedError, match="nanny"):
        client.get_worker_logs(nanny=True)
    with pytest.raises(ValueError, match="log lines"):
        client.get_scheduler_logs(n=-2)


def test_cluster_get_logs(cluster: LocalCluster, client: Client) -> None:
    logs = cluster.get_logs()
    assert list(logs)[:2] == ["Cluster", "Scheduler"]
    assert set(logs) - {"Cluster", "Scheduler"} == set(client.nthreads())
    assert "joined" in logs["Scheduler"]
    assert "<pre" in logs._repr_html_()
    assert set(cluster.get_logs(cluster=False, workers=False)) == {"Scheduler"}


# ---------------------------------------------------------------------- metadata, sizes


def test_metadata_paths_defaults_and_errors(client: Client) -> None:
    client.set_metadata("x", 123)
    assert client.get_metadata("x") == 123
    client.set_metadata(["x", "y"], 1)  # x was not a dict: it becomes one
    client.set_metadata(["x", "w", "z"], [1, "two"])
    assert client.get_metadata("x") == {"y": 1, "w": {"z": [1, "two"]}}
    assert client.get_metadata(["x", "w"]) == {"z": [1, "two"]}
    assert client.get_metadata(("x", "w", "z")) == [1, "two"]
    assert client.get_metadata("nothing", default=None) is None
    assert client.get_metadata(["x", "y", "deeper"], "d") == "d"
    with pytest.raises(KeyError, match="nothing"):
        client.get_metadata("nothing")
    with pytest.raises(TypeError, match="msgpack"):
        client.set_metadata("bad", object())
    with pytest.raises(ValueError, match="key"):
        client.set_metadata([], 1)


def test_metadata_of_a_task_goes_when_it_is_forgotten(
        client: Client, forgotten: Callable[..., bool]) -> None:
    future = client.submit(inc, 41, pure=False)
    future.result()
    key = future.key
    client.set_metadata(key, {"note": "kept while the task lives"})
    assert client.get_metadata(key) == {"note": "kept while the task lives"}
    del future
    assert forgotten([key])
    assert client.get_metadata(key, default="gone") == "gone"


def test_nbytes_per_key_and_per_prefix(client: Client, released: Callable[..., bool]) -> None:
    futures = [client.submit(blob, n, pure=False) for n in (1000, 2000)]
    wait(futures)
    sizes = client.nbytes(futures, summary=False)
    assert sizes[futures[0].key] >= 1000 and sizes[futures[1].key] >= 2000
    assert client.nbytes(futures) == {"blob": sum(sizes.values())}
    assert client.nbytes()["blob"] >= sum(sizes.values())
    with pytest.raises(KeyError, match="does not know"):
        client.nbytes(["no-such-key"])


# ---------------------------------------------------------------------- versions, dump, benchmark


def test_versions_of_every_process(client: Client) -> None:
    v = client.get_versions(packages=["numpy"])
    assert set(v) == {"client", "scheduler", "workers"}
    assert set(v["workers"]) == set(client.nthreads())
    for info in [v["client"], v["scheduler"], *v["workers"].values()]:
        assert info["packages"]["shoal"] and "numpy" in info["packages"]
        assert info["host"]["python"] == v["client"]["host"]["python"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.get_versions(check=True)  # one environment: nothing to warn about


@pytest.mark.parametrize("fmt", ["msgpack", "yaml"])
def test_dump_cluster_state(client: Client, tmp_path: Path, fmt: str) -> None:
    future = client.submit(inc, 1, pure=False)
    future.result()
    path = client.dump_cluster_state(str(tmp_path / "dump"), format=fmt, exclude=["logs"])
    state = load(path)
    assert set(state) == {"scheduler", "workers", "versions"}
    sched = state["scheduler"]
    assert sched["tasks"][future.key]["state"] == "memory"
    assert set(sched["workers"]) == set(client.nthreads()) == set(state["workers"])
    assert "logs" not in sched and all("logs" not in w for w in state["workers"].values())
    holder = sched["tasks"][future.key]["who_has"][0]
    assert state["workers"][holder]["tasks"][future.key]["state"] == "memory"
    assert set(state["versions"]["workers"]) == set(client.nthreads())


def test_dump_written_by_the_scheduler_and_bad_arguments(client: Client, tmp_path: Path) -> None:
    path = client.dump_cluster_state(str(tmp_path / "remote"), write_from_scheduler=True)
    assert path == str(tmp_path / "remote.msgpack.gz") and "scheduler" in load(path)
    with pytest.raises(ValueError, match="format"):
        client.dump_cluster_state(str(tmp_path / "x"), format="json")
    with pytest.raises(NotImplementedError, match="URL"):
        client.dump_cluster_state("s3://bucket/dump")
    with pytest.raises(NotImplementedError, match="storage_options"):
        client.dump_cluster_state(str(tmp_path / "x"), anon=True)


@pytest.mark.timeout(60)
def test_benchmark_hardware(client: Client) -> None:
    result = client.benchmark_hardware()
    assert set(result) == {"disk", "memory", "network"}
    for kind, rates in result.items():
        assert rates, kind
        assert all(rate > 0 for rate in rates.values()), (kind, rates)
    assert "10 MiB" in result["network"]


# ---------------------------------------------------------------------- asynchronous


def test_asynchronous_client(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            async with get_task_stream(client) as ts:
                await client.submit(inc, 1, pure=False)
            assert len(ts.data) == 1
            assert len(await client.get_task_stream(count=1)) == 1
            logs: dict[str, Any] = await client.get_worker_logs()
            assert set(logs) == set(await client.nthreads())
            assert (await client.get_metadata("absent", default=3)) == 3
            assert "scheduler" in await client.get_versions()
            assert (await client.profile())["identifier"] == "root"
            with pytest.raises(TypeError, match="async with"), get_task_stream(client):
                pass

    asyncio.run(main())


def test_in_process_cluster(inproc_client: Client, wait_until: Callable[..., bool]) -> None:
    """Scheduler and workers share this process (and its log buffer)."""
    client = inproc_client
    with get_task_stream(client) as ts:
        client.submit(spin_in_busy, 0.2, pure=False).result()
    assert [r["status"] for r in ts.data] == ["OK"]
    assert wait_until(lambda: client.profile(key="spin_in_busy")["count"] > 0, timeout=20)
    logging.getLogger("shoal.test").warning("seen by everyone here")
    assert any("seen by everyone here" in t for _, t in client.get_scheduler_logs(n=50))
