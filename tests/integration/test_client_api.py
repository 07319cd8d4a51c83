"""The Client's own surface: dask's constructor keywords, ``asynchronous=`` on
a synchronous client, ``sync``, ``current``/``as_current``, scheduler files,
and the introspection methods' keywords and layouts."""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading

import pytest

import shoal
from shoal import Client, LocalCluster

from ..conftest import poll_until


def inc(x: int) -> int:
    return x + 1


def test_scheduler_info_has_dasks_layout_and_limits_workers(client: Client) -> None:
    info = client.scheduler_info()
    assert info["type"] == "Scheduler" and info["address"] == client.scheduler_address
    assert info["n_workers"] == 2 and info["total_threads"] == 2
    assert len(info["workers"]) == 2
    w = next(iter(info["workers"].values()))
    for field in ("name", "host", "nthreads", "memory_limit", "last_seen", "metrics", "status"):
        assert field in w
    metrics = w["metrics"]
    for field in ("memory", "cpu", "managed_bytes", "spilled_bytes", "task_counts", "executing",
                  "in_memory", "ready", "num_fds"):
        assert field in metrics
    assert set(metrics["spilled_bytes"]) == {"memory", "disk"}
    assert len(client.scheduler_info(n_workers=1)["workers"]) == 1
    assert client.scheduler_info(n_workers=1)["n_workers"] == 2
    assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
    with pytest.raises(ValueError, match="n_workers"):
        client.scheduler_info(n_workers="all")


def test_worker_selection_by_address_or_name(client: Client) -> None:
    info = client.scheduler_info(n_workers=-1)["workers"]
    address, w = next(iter(info.items()))
    assert client.nthreads(workers=[address]) == {address: 1}
    assert client.nthreads(workers=[w["name"]]) == {address: 1}
    assert set(client.processing(workers=address)) == {address}
    assert set(client.has_what(workers=[w["name"]])) == {address}
    with pytest.raises(ValueError, match="no worker with address or name 'nobody'"):
        client.nthreads(workers=["nobody"])


def test_who_has_takes_futures_or_keys(client: Client) -> None:
    f = client.submit(inc, 1)
    assert f.result(timeout=10) == 2
    by_future = client.who_has([f])
    assert list(by_future) == [f.key] and by_future[f.key]
    assert client.who_has(f.key) == by_future
    assert client.who_has({"a": [f]}) == by_future
    with pytest.raises(TypeError, match="expected futures or keys"):
        client.who_has(3)


def test_asynchronous_keyword_on_a_synchronous_client(client: Client) -> None:
    """dask accepts asynchronous= on every method; on a synchronous client,
    called from ordinary code, the answer comes as an awaitable that any
    event loop can await."""
    awaitable = client.nthreads(asynchronous=True)

    async def get() -> object:
        return await awaitable

    assert asyncio.run(get()) == client.nthreads()


def test_sync_runs_coroutine_functions_and_plain_functions(client: Client) -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert client.sync(add, 1, b=2) == 3
    assert client.sync(lambda: threading.current_thread().name) == "shoal-loop"


def test_current_and_as_current(cluster: LocalCluster) -> None:
    with Client(cluster) as a, Client(cluster, set_as_default=False) as b:
        assert Client.current() is a
        with b.as_current():
            assert Client.current() is b
            assert shoal.default_client() is b
            assert shoal.Future(a.submit(inc, 1).key).client is b
        assert Client.current() is a
        with pytest.raises(ValueError, match="as_current"):
            Client.current(allow_global=False)


def test_scheduler_file(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"type": "Scheduler", "address": cluster.scheduler_address}))
    with Client(scheduler_file=str(path)) as c:
        assert c.submit(inc, 1).result(timeout=10) == 2
    with pytest.raises(ValueError, match="not both"):
        Client(cluster.scheduler_address, scheduler_file=str(path))


def test_missing_scheduler_file_times_out_clearly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TimeoutError, match="does not exist"):
        Client(scheduler_file=str(tmp_path / "nowhere.json"), timeout=0.2)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TimeoutError, match="not a scheduler file"):
        Client(scheduler_file=str(bad), timeout=0.2)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"security": object()}, TypeError, "security"),
    ({"serializers": ["msgpack"]}, NotImplementedError, "serializers"),
    ({"extensions": {"pubsub": object}}, NotImplementedError, "extensions"),
    ({"connection_limit": 0}, ValueError, "connection_limit"),
    ({"heartbeat_interval": "often"}, ValueError, "often"),
])
def test_keywords_shoal_cannot_honour_are_clear_errors(cluster: LocalCluster, kwargs: dict,
                                                       error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Client(cluster, **kwargs)


def test_dask_keywords_that_shoal_honours(cluster: LocalCluster) -> None:
    with Client(cluster, timeout="5s", heartbeat_interval="50ms", serializers=["dask", "pickle"],
                deserializers=None, extensions={}, direct_to_workers=True,
                connection_limit=1) as c:
        assert c.heartbeat_interval == pytest.approx(0.05)
        assert c.timeout == 5.0
        first, second = sorted(c.scheduler_info()["workers"])
        for worker in (first, second):  # one worker after the other: the idle one is closed
            [f] = c.scatter([worker.encode() * 50_000], workers=[worker], hash=False)
            assert c.gather(f) == worker.encode() * 50_000
            assert list(c.pool._conns) == [worker]


def test_rpc_and_the_scheduler_proxy(client: Client) -> None:
    f = client.submit(inc, 10)
    assert f.result(timeout=10) == 11

    async def ask() -> tuple[object, object]:
        async with shoal.rpc(client.scheduler_address) as r:
            who = await r.who_has(keys=[f.key])
            with pytest.raises(shoal.ShoalError, match="unknown request"):
                await r.no_such_request()
        return who, await client.scheduler.nthreads()

    who, nthreads = client.sync(ask)
    assert who == client.who_has([f])
    assert nthreads == client.nthreads()
    assert client.scheduler.address == client.scheduler_address


def test_write_scheduler_file(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "from-client.json"
    with Client(cluster) as c:
        c.write_scheduler_file(str(path))
        assert json.loads(path.read_text())["address"] == c.scheduler_address
        with pytest.raises(ValueError, match="already set"):
            c.write_scheduler_file(str(path))
    with Client(scheduler_file=str(path)) as again:
        assert again.submit(inc, 2).result(timeout=10) == 3


def test_small_names_dask_users_import() -> None:
    import builtins

    from shoal import CompatibleExecutor, Status, TimeoutError, sync  # noqa: F401

    assert TimeoutError is builtins.TimeoutError
    assert Status.running == "running" and str(Status.closed) == "closed"
    with pytest.raises(NotImplementedError, match="get_executor"):
        CompatibleExecutor()


def test_module_level_sync_runs_on_the_clients_loop(client: Client) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert shoal.sync(client.loop, where) == "shoal-loop"
    with pytest.raises(TimeoutError):
        shoal.sync(client.loop, asyncio.sleep, 1, callback_timeout="10ms")


def test_pending_futures_of_a_closed_client_do_not_hang(cluster: LocalCluster, client: Client) -> None:
    c = Client(cluster, set_as_default=False)
    blocker = shoal.Event(client=c)
    f = c.submit(lambda e: e.wait(30), blocker, pure=False)
    c.close()
    shoal.Event(blocker.name, client=client).set()  # frees the worker's thread
    with pytest.raises(shoal.FutureLost, match="the client was closed"):
        f.result(timeout=10)
    assert f.status == "cancelled"


def test_get_task_metadata(client: Client) -> None:
    def fail() -> None:
        raise ValueError("no")

    with shoal.get_task_metadata() as tasks:
        ok = client.map(inc, range(3))
        bad = client.submit(fail)
        shoal.wait([*ok, bad], timeout=10)
    assert tasks.state == {**{f.key: "memory" for f in ok}, bad.key: "erred"}
    assert tasks.metadata[ok[0].key]["type"] == "int"
    assert tasks.metadata[ok[0].key]["workers"]
    assert client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins.plugins)) == []


def test_cancel_with_a_reason_and_a_message(cluster: LocalCluster, client: Client) -> None:
    from shoal.errors import FutureCancelledError

    gate = shoal.Event(client=client)
    f = client.submit(lambda e: e.wait(30), gate, pure=False)
    f.cancel(reason="not needed", msg="the user changed their mind")
    with pytest.raises(FutureCancelledError, match="cancelled for reason: not needed") as info:
        f.result(timeout=10)
    assert info.value.key == f.key and info.value.msg == "the user changed their mind"
    assert isinstance(info.value, shoal.CancelledError)
    with pytest.raises(FutureCancelledError):
        f.exception(timeout=10)
    # another client holding the same key hears why, with force=True
    g = client.submit(lambda e: e.wait(30), gate, key="shared-cancel-key")
    with Client(cluster) as other:
        theirs = shoal.Future("shared-cancel-key", other)
        client.cancel([g], force=True, reason="shutting down")
        with pytest.raises(FutureCancelledError, match="shutting down"):
            theirs.result(timeout=10)
    gate.set()


def span_of(span_id: str, dask_scheduler: object) -> dict[str, object]:
    s = dask_scheduler.spans[span_id]  # type: ignore[attr-defined]
    return {"name": s.name, "parent": s.parent.id if s.parent else None,
            "children": [c.id for c in s.children], "keys": sorted(s.keys),
            "states": {k: v for k, v in s.states.items() if v}, "done": s.done,
            "timed": s.enqueued <= s.start <= s.stop}


def test_spans_group_the_tasks_submitted_inside(client: Client) -> None:
    with shoal.span("load") as outer:
        a = client.map(inc, range(3), pure=False)
        with shoal.span("clean") as inner:
            b = client.submit(sum, a, pure=False)
    c = client.submit(inc, 100, pure=False)  # outside any span
    assert b.result(timeout=10) == 6 and c.result(timeout=10) == 101

    def settled() -> bool:
        got = client.run_on_scheduler(span_of, inner)
        return bool(got["done"])

    assert poll_until(settled, timeout=10)
    o, i = client.run_on_scheduler(span_of, outer), client.run_on_scheduler(span_of, inner)
    assert o["name"] == ("load",) and i["name"] == ("load", "clean")
    assert i["parent"] == outer and o["children"] == [inner]
    assert o["keys"] == sorted(f.key for f in a) and i["keys"] == [b.key]
    assert o["states"] == {"memory": 3} and i["states"] == {"memory": 1} and i["timed"]
    with pytest.raises(ValueError, match="at least one span tag"), shoal.span():
        pass


def test_wait_on_cancelled_futures_raises_grouped_by_reason(client: Client) -> None:
    from shoal.errors import FuturesCancelledError

    gate = shoal.Event(client=client)
    a = client.submit(lambda e: e.wait(30), gate, pure=False)
    b = client.submit(lambda e: e.wait(30), gate, pure=False)
    c = client.submit(inc, 1, pure=False)
    a.cancel(reason="first reason")
    b.cancel(reason="second reason", msg="details")
    gate.set()  # the cancelled runs end and free the two threads for c
    with pytest.raises(FuturesCancelledError) as info:
        shoal.wait([a, b, c], timeout=10)
    assert sorted(g.reason for g in info.value.error_groups) == ["first reason", "second reason"]
    assert "2 Futures cancelled" in str(info.value) and "details" in str(info.value)
    assert isinstance(info.value, shoal.CancelledError)


def test_closing_the_default_client_makes_the_previous_one_default(cluster: LocalCluster) -> None:
    with Client(cluster) as first:
        second = Client(cluster)
        assert shoal.default_client() is second
        second.close()
        assert shoal.default_client() is first
