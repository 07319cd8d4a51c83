"""``client.get_executor()``: a ``concurrent.futures.Executor`` on the cluster.

A conformance suite after CPython's own executor tests
(Lib/test/test_concurrent_futures: executor.py, test_wait.py,
test_as_completed.py, test_shutdown.py) and dask.distributed's
test_client_executor.py, run against a real cluster.  Calls that must stay
unfinished wait on a ``shoal.Event``; calls that must never start ask for a
resource no worker has.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from operator import add
from pathlib import Path
from typing import Any

import pytest

from shoal import Client, Event, LocalCluster, get_worker
from shoal.client.executor import ClientExecutor
from tests.integration.test_control import flaky

pytestmark = pytest.mark.timeout(60)

#: calls that ask for this never start: no worker has it
NEVER = {"resources": {"no-such-resource": 1}}


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def inc(x: int) -> int:
    return x + 1


def idle(x: Any) -> Any:
    """Submitted with ``NEVER``: never runs."""
    return x


def idle_in_map(x: Any) -> Any:
    return x


def gated(name: str, value: Any = None) -> Any:
    """Returns ``value`` once the event ``name`` is set."""
    if not Event(name).wait(timeout=30):
        raise TimeoutError(f"event {name} never set")
    return value


def gated_failure(name: str) -> None:
    gated(name)
    raise ValueError("after the gate")


def fresh() -> str:
    """A new value on every call."""
    return uuid.uuid4().hex


def where() -> str:
    return str(get_worker().address)


def big(n: int) -> bytes:
    return b"x" * n


class CustomError(Exception):
    pass


def raise_custom(message: str) -> None:
    raise CustomError(message)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def gate(client: Client) -> Iterator[str]:
    """The name of a ``shoal.Event`` that calls can wait on; set at the end
    of the test whatever happens, so that no worker thread stays blocked."""
    name = f"gate-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        Event(name).set()


def keys_left(client: Client, prefix: str) -> set[str]:
    """Keys of this function the scheduler or a worker still knows."""
    known = set(client.task_states()) | {k for ks in client.has_what().values() for k in ks}
    return {k for k in known if k.startswith(prefix + "-")}


# futures in each state, as CPython's tests build them
def pending_future() -> cf.Future[Any]:
    return cf.Future()


def cancelled_future() -> cf.Future[Any]:
    f: cf.Future[Any] = cf.Future()
    f.cancel()
    return f


def cancelled_and_notified_future() -> cf.Future[Any]:
    f = cancelled_future()
    f.set_running_or_notify_cancel()
    return f


def exception_future() -> cf.Future[Any]:
    f: cf.Future[Any] = cf.Future()
    f.set_exception(OSError())
    return f


def successful_future() -> cf.Future[Any]:
    f: cf.Future[Any] = cf.Future()
    f.set_result(42)
    return f


# ---------------------------------------------------------------------------
# submit
# ---------------------------------------------------------------------------


def test_submit_returns_real_futures_with_the_value(client: Client) -> None:
    with client.get_executor() as ex:
        assert isinstance(ex, cf.Executor) and isinstance(ex, ClientExecutor)
        future = ex.submit(pow, 2, 8)
        assert isinstance(future, cf.Future)
        assert future.result(timeout=10) == 256
        assert future.done() and not future.running() and not future.cancelled()
        assert future.exception() is None


def test_submit_keyword_arguments_go_to_the_function(client: Client) -> None:
    with client.get_executor() as ex:
        assert ex.submit(mul, 2, y=8).result(timeout=10) == 16
        # names the executor or the client use for themselves reach the call too
        got = ex.submit(capture, 1, self=2, fn=3, workers=4, pure=5, key=6).result(timeout=10)
        assert got == ((1,), {"self": 2, "fn": 3, "workers": 4, "pure": 5, "key": 6})
        with pytest.raises(TypeError):
            ex.submit(fn=capture, arg=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ex.submit(arg=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="callable"):
            ex.submit(42)  # type: ignore[arg-type]


def test_exceptions_propagate_with_their_type(client: Client) -> None:
    with client.get_executor() as ex:
        f = ex.submit(divmod, 1, 0)
        with pytest.raises(ZeroDivisionError):
            f.result(timeout=10)
        assert isinstance(f.exception(), ZeroDivisionError)
        g = ex.submit(raise_custom, "custom message")
        with pytest.raises(CustomError, match="custom message"):
            g.result(timeout=10)
        assert type(g.exception()) is CustomError


def test_calls_are_impure_unless_asked(client: Client) -> None:
    """An executor runs every call it is given (a deliberate default: dask's
    executor shares one task between equal calls unless pure=False)."""
    with client.get_executor() as ex:
        values = [f.result(timeout=10) for f in [ex.submit(fresh) for _ in range(5)]]
        assert len(set(values)) == 5
    with client.get_executor(pure=True) as ex:
        values = [f.result(timeout=10) for f in [ex.submit(fresh) for _ in range(5)]]
        assert len(set(values)) == 1


def test_done_callbacks_and_asyncio_wrap_future(client: Client) -> None:
    with client.get_executor() as ex:
        seen: list[int] = []
        called = threading.Event()

        def callback(f: cf.Future[int]) -> None:
            seen.append(f.result())
            called.set()

        ex.submit(inc, 41).add_done_callback(callback)
        assert called.wait(10) and seen == [42]

        async def main() -> int:
            return await asyncio.wrap_future(ex.submit(inc, 1))

        assert asyncio.run(main()) == 2


# ---------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------


def test_map_yields_results_in_order(client: Client) -> None:
    with client.get_executor() as ex:
        expected = list(map(pow, range(10), range(10)))
        assert list(ex.map(pow, range(10), range(10))) == expected
        assert list(ex.map(pow, range(10), range(10), chunksize=3)) == expected
        # iterables of different lengths: as long as the shortest
        assert list(ex.map(add, range(5), range(100))) == [0, 2, 4, 6, 8]
        assert list(ex.map(add, [], range(3))) == []
        assert list(ex.map(inc, iter(range(3)))) == [1, 2, 3]
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(inc, range(3), chunksize=0)


def test_map_raises_the_first_exception_in_order(client: Client) -> None:
    with client.get_executor() as ex:
        it = ex.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
        assert next(it) == (0, 1)
        assert next(it) == (0, 1)
        with pytest.raises(ZeroDivisionError):
            next(it)


def test_map_timeout(client: Client, gate: str) -> None:
    """The first two calls finish, the third waits on a gate: iterating raises
    TimeoutError once the timeout (counted from the map call) has passed."""
    with client.get_executor() as ex:
        results = []
        with pytest.raises(cf.TimeoutError):
            # generous: only the two quick calls have to make it in time
            for x in ex.map(gated_from_two, [0, 1, 2], [gate] * 3, timeout=1):
                results.append(x)
        assert results == [0, 1]
        Event(gate).set()


def gated_from_two(i: int, name: str) -> int:
    return i if i < 2 else int(gated(name, i))


def test_map_timeout_cancels_the_calls_not_started(client: Client) -> None:
    with client.get_executor(**NEVER) as ex:
        it = ex.map(idle, range(5), timeout=0.2)
        with pytest.raises(cf.TimeoutError):
            next(it)
        # cancelled on the cluster, and their keys forgotten
        assert wait_until(lambda: not keys_left(client, "idle"))


def test_map_buffersize_submits_lazily(client: Client) -> None:
    """``buffersize`` (Python 3.14's keyword): an endless iterable works, and
    closing the iterator cancels what was submitted ahead."""
    with client.get_executor() as ex:
        it = ex.map(inc, itertools.count(), buffersize=3)
        assert list(itertools.islice(it, 10)) == list(range(1, 11))
        it.close()
        with pytest.raises(ValueError, match="buffersize"):
            ex.map(inc, range(3), buffersize=0)
        with pytest.raises(TypeError, match="buffersize"):
            ex.map(inc, range(3), buffersize=2.0)  # type: ignore[arg-type]


def test_closing_a_map_iterator_cancels_the_calls_not_started(client: Client) -> None:
    with client.get_executor(**NEVER) as ex:
        unread = ex.map(idle_in_map, range(20))  # submitted at once, never iterated
        assert wait_until(lambda: len(keys_left(client, "idle_in_map")) == 20)
        it = ex.map(idle_in_map, range(20, 40), timeout=0.05)
        with pytest.raises(cf.TimeoutError):
            next(it)
        # the 20 of the iterator that timed out are cancelled; the unread ones stay
        assert wait_until(lambda: len(keys_left(client, "idle_in_map")) == 20)
        it = ex.map(idle_in_map, range(40, 50))
        it.close()  # never started: nothing to clean up, as in CPython
        assert wait_until(lambda: len(keys_left(client, "idle_in_map")) == 30)
        ex.shutdown(wait=False, cancel_futures=True)
        assert wait_until(lambda: not keys_left(client, "idle_in_map"))
        del unread


# ---------------------------------------------------------------------------
# cancel
# ---------------------------------------------------------------------------


def test_cancel_a_call_not_started(client: Client) -> None:
    with client.get_executor(**NEVER) as ex:
        f = ex.submit(idle, 1)
        assert f.cancel() is True
        assert f.cancelled() and f.done() and not f.running()
        assert f.cancel() is True  # again: still cancelled
        with pytest.raises(cf.CancelledError):
            f.result(timeout=10)
        with pytest.raises(cf.CancelledError):
            f.exception(timeout=10)
        # wait() and as_completed() see it done (it was notified)
        assert cf.wait([f], timeout=10).done == {f}
        assert list(cf.as_completed([f], timeout=10)) == [f]
        assert wait_until(lambda: not keys_left(client, "idle"))


def test_cancel_returns_false_once_a_worker_runs_the_call(client: Client, gate: str) -> None:
    with client.get_executor() as ex:
        f = ex.submit(gated, gate, "done")
        assert wait_until(lambda: sum(map(len, client.processing().values())) == 1)
        assert f.cancel() is False
        assert f.running() and not f.cancelled() and not f.done()
        Event(gate).set()
        assert f.result(timeout=10) == "done"
        assert f.cancel() is False  # finished


def test_cancelled_calls_complete_wait_and_as_completed(client: Client, gate: str) -> None:
    with client.get_executor() as ex, client.get_executor(**NEVER) as never:
        running = ex.submit(gated, gate)
        queued = [never.submit(idle, i) for i in range(3)]
        queued[1].cancel()
        done, not_done = cf.wait([running, *queued], return_when=cf.FIRST_COMPLETED, timeout=10)
        assert done == {queued[1]}
        assert not_done == {running, queued[0], queued[2]}
        for f in (queued[0], queued[2]):
            f.cancel()
        assert set(cf.as_completed(queued, timeout=10)) == set(queued)
        assert all(f.cancelled() for f in queued)
        Event(gate).set()
        assert running.result(timeout=10) is None


# ---------------------------------------------------------------------------
# shutdown
# ---------------------------------------------------------------------------


def test_submit_after_shutdown_raises(client: Client) -> None:
    ex = client.get_executor()
    assert ex.submit(inc, 1).result(timeout=10) == 2
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 2, 5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(inc, range(3))
    ex.shutdown()  # twice is fine


def test_shutdown_waits_for_outstanding_calls(client: Client, gate: str) -> None:
    ex = client.get_executor()
    fs = [ex.submit(gated, gate, i) for i in range(3)]
    returned = threading.Event()

    def shut_down() -> None:
        ex.shutdown(wait=True)
        returned.set()

    t = threading.Thread(target=shut_down)
    t.start()
    assert not returned.wait(0.3)  # the calls still wait on the gate
    Event(gate).set()
    t.join(10)
    assert returned.is_set()
    assert all(f.done() for f in fs)  # done before shutdown returned
    assert [f.result() for f in fs] == [0, 1, 2]


def test_shutdown_without_wait_lets_calls_finish(client: Client, gate: str) -> None:
    """As in CPython (dask's executor cancels them instead)."""
    ex = client.get_executor()
    fs = [ex.submit(gated, gate, i) for i in range(3)]
    ex.shutdown(wait=False)
    assert not any(f.done() for f in fs)
    Event(gate).set()
    assert [f.result(timeout=10) for f in fs] == [0, 1, 2]


def gated_at_shutdown(name: str, value: Any = None) -> Any:
    """``gated`` under a name of its own: the scheduler has measured no
    duration for it, so each worker holds two calls (one running, one ahead)."""
    return gated(name, value)


def test_shutdown_cancel_futures_cancels_the_calls_not_started(client: Client, gate: str) -> None:
    ex = client.get_executor()
    fs = [ex.submit(gated_at_shutdown, gate, i) for i in range(12)]
    ex.shutdown(wait=False, cancel_futures=True)
    cancelled = [f for f in fs if f.cancelled()]
    others = [f for f in fs if not f.cancelled()]
    # two single-thread workers hold four calls; the rest were still queued
    assert len(cancelled) == 8 and len(others) == 4
    assert all(f.running() for f in others)
    Event(gate).set()
    assert [f.result(timeout=10) for f in others] == [fs.index(f) for f in others]
    assert all(f.done() for f in cancelled)


def test_context_manager_shuts_down(client: Client, gate: str) -> None:
    """Leaving the block waits for the calls (the gate opens on a timer)."""
    with client.get_executor() as ex:
        assert list(ex.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        fs = [ex.submit(gated, gate, i) for i in range(2)]
        opener = threading.Timer(0.2, Event(gate).set)
        opener.start()
    assert all(f.done() for f in fs)
    assert [f.result() for f in fs] == [0, 1]
    with pytest.raises(RuntimeError):
        ex.submit(inc, 1)
    opener.join()


# ---------------------------------------------------------------------------
# concurrent.futures.wait and as_completed
# ---------------------------------------------------------------------------


def test_wait_same_future_twice(client: Client) -> None:
    with client.get_executor() as ex:
        f = ex.submit(mul, 1, 2)
        done, not_done = cf.wait([f, f], return_when=cf.ALL_COMPLETED, timeout=10)
        assert done == {f} and not not_done


def test_wait_first_completed(client: Client, gate: str) -> None:
    with client.get_executor() as ex:
        cancelled = cancelled_future()
        f1 = ex.submit(mul, 21, 2)
        f2 = ex.submit(gated, gate)
        done, not_done = cf.wait([cancelled, f1, f2], return_when=cf.FIRST_COMPLETED, timeout=10)
        assert done == {f1}
        assert not_done == {cancelled, f2}
        # some already complete
        notified, ok = cancelled_and_notified_future(), successful_future()
        done, not_done = cf.wait([notified, ok, f2], return_when=cf.FIRST_COMPLETED, timeout=10)
        assert done == {notified, ok} and not_done == {f2}
        Event(gate).set()
        f2.result(timeout=10)


def test_wait_first_exception(client: Client, gate: str) -> None:
    with client.get_executor() as ex:
        f1 = ex.submit(mul, 2, 21)
        assert f1.result(timeout=10) == 42
        f2 = ex.submit(divmod, 21, 0)
        f3 = ex.submit(gated, gate)
        mixed: list[cf.Future[Any]] = [f1, f2, f3]
        done, not_done = cf.wait(mixed, return_when=cf.FIRST_EXCEPTION, timeout=10)
        assert done == {f1, f2} and not_done == {f3}
        # some already complete, one already failed
        ok, failed = successful_future(), exception_future()
        cancelled, notified = cancelled_future(), cancelled_and_notified_future()
        done, not_done = cf.wait([ok, cancelled, notified, f2, f3], return_when=cf.FIRST_EXCEPTION,
                                 timeout=10)
        assert done == {ok, notified, f2} and not_done == {cancelled, f3}
        done, not_done = cf.wait([failed, f3], return_when=cf.FIRST_EXCEPTION, timeout=10)
        assert done == {failed} and not_done == {f3}
        # an executor call failing while we wait
        f4 = ex.submit(gated_failure, gate)
        Event(gate).set()
        done, _ = cf.wait([f4], return_when=cf.FIRST_EXCEPTION, timeout=10)
        assert done == {f4} and isinstance(f4.exception(), ValueError)


def test_wait_all_completed_and_timeout(client: Client, gate: str) -> None:
    with client.get_executor() as ex:
        f1 = ex.submit(divmod, 2, 0)
        f2 = ex.submit(mul, 2, 21)
        canned = [successful_future(), cancelled_and_notified_future(), exception_future()]
        done, not_done = cf.wait([*canned, f1, f2], return_when=cf.ALL_COMPLETED, timeout=10)
        assert done == {*canned, f1, f2} and not not_done
        blocked = ex.submit(gated, gate)
        done, not_done = cf.wait([*canned, blocked], timeout=0.05)
        assert done == set(canned) and not_done == {blocked}
        Event(gate).set()
        blocked.result(timeout=10)


def test_as_completed(client: Client, gate: str) -> None:
    with client.get_executor() as ex:
        canned = [cancelled_and_notified_future(), exception_future(), successful_future()]
        f1 = ex.submit(mul, 2, 21)
        f2 = ex.submit(mul, 7, 6)
        assert set(cf.as_completed([*canned, f1, f2], timeout=10)) == {*canned, f1, f2}
        # timing out before the last one: the completed ones come first
        blocked = ex.submit(gated, gate)
        for timeout in (0, 0.1):
            seen = set()
            with pytest.raises(cf.TimeoutError):
                for f in cf.as_completed({*canned, blocked}, timeout=timeout):
                    seen.add(f)
            assert seen == set(canned)
        # the same future more than once comes once
        Event(gate).set()
        assert list(cf.as_completed(itertools.repeat(blocked, 3), timeout=10)) == [blocked]


def test_as_completed_many_calls(client: Client) -> None:
    with client.get_executor() as ex:
        fs = [ex.submit(inc, i) for i in range(50)]
        assert sorted(f.result() for f in cf.as_completed(fs, timeout=20)) == list(range(1, 51))


# ---------------------------------------------------------------------------
# the cluster side
# ---------------------------------------------------------------------------


def test_done_calls_are_released_from_the_cluster(client: Client) -> None:
    """A call's key is dropped once its outcome is in the future, even while
    the caller keeps the future: nothing stays on the workers."""
    with client.get_executor() as ex:
        small = [ex.submit(big, 10) for _ in range(5)]
        large = [ex.submit(big, 200_000) for _ in range(3)]  # fetched from workers
        failed = ex.submit(divmod, 1, 0)
        mapped = list(ex.map(big, [5, 300_000]))
        assert [f.result(timeout=10) for f in small] == [b"x" * 10] * 5
        assert [len(f.result(timeout=10)) for f in large] == [200_000] * 3
        assert isinstance(failed.exception(timeout=10), ZeroDivisionError)
        assert [len(x) for x in mapped] == [5, 300_000]
        assert wait_until(lambda: not keys_left(client, "big") and not keys_left(client, "divmod"))
        assert len(large[0].result()) == 200_000  # still here


def test_large_results_are_fetched(client: Client) -> None:
    with client.get_executor() as ex:
        fs = [ex.submit(big, 1_000_000 + i) for i in range(4)]
        assert [len(f.result(timeout=20)) for f in fs] == [1_000_000 + i for i in range(4)]


def test_options_apply_to_every_call(client: Client, tmp_path: Path) -> None:
    worker = sorted(client.scheduler_info()["workers"])[0]
    with client.get_executor(workers=worker, allow_other_workers=False, priority=5,
                             fifo_timeout="100 ms") as ex:
        assert set(ex.map(_where_ignoring, range(8))) == {worker}
        assert ex.submit(where).result(timeout=10) == worker
    with client.get_executor(retries=2) as ex:
        assert ex.submit(flaky, str(tmp_path / "a"), 2).result(timeout=10) == "ok"
    with client.get_executor(retries=1) as ex, pytest.raises(RuntimeError, match="failure 2"):
        ex.submit(flaky, str(tmp_path / "b"), 2).result(timeout=10)
    with client.get_executor(**NEVER) as ex:
        f = ex.submit(idle, 1)
        assert wait_until(lambda: "no-worker" in client.task_states().values())
        assert not f.done() and f.cancel()


def _where_ignoring(_: int) -> str:
    return where()


def test_unknown_or_bad_keywords_raise(client: Client) -> None:
    with pytest.raises(TypeError, match=r"unsupported arguments to ClientExecutor: \['bar', 'foo'\]"):
        client.get_executor(workers="x", foo=1, bar=2)
    for name in ("key", "actor", "actors", "batch_size", "timeout"):
        with pytest.raises(TypeError, match=name):
            client.get_executor(**{name: 1})
    with pytest.raises(TypeError, match="retries"):
        client.get_executor(retries="3")
    with pytest.raises(ValueError, match="retries"):
        client.get_executor(retries=-1)
    with pytest.raises(TypeError, match="workers"):
        client.get_executor(workers=5)
    with pytest.raises(TypeError, match="resources"):
        client.get_executor(resources=["GPU"])
    with pytest.raises(TypeError, match="priority"):
        client.get_executor(priority=1.5)
    with pytest.raises(TypeError, match="pure"):
        client.get_executor(pure="yes")
    with pytest.raises(TypeError, match="fifo_timeout"):
        client.get_executor(fifo_timeout=[1])


def test_asynchronous_client(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            with client.get_executor() as ex:
                futures = [ex.submit(inc, i) for i in range(3)]
                assert [await asyncio.wrap_future(f) for f in futures] == [1, 2, 3]
            never = client.get_executor(**NEVER)
            f = never.submit(idle, 1)
            with pytest.raises(RuntimeError, match="event loop"):
                f.cancel()  # would wait on the loop it runs on
            assert await asyncio.get_running_loop().run_in_executor(None, f.cancel)
            never.shutdown(wait=False)

    asyncio.run(main())
