"""The futures API against a real cluster of processes."""

from __future__ import annotations

import gc
import time
from operator import add
from pathlib import Path
from typing import Any

import pytest

from shoal import Client, Future

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int, delay: float = 0.2) -> int:
    time.sleep(delay)
    return x + 1


def test_submit_with_nested_futures(client: Client) -> None:
    fx = client.submit(inc, 1)
    fy = client.submit(inc, 2)
    fz = client.submit(sum, [fx, fy])
    assert fz.result(timeout=10) == 5
    nested = client.submit(lambda d: d["a"][0] + d["b"], {"a": (fx,), "b": fy})
    assert nested.result(timeout=10) == 5


def test_future_repr_status_and_type(client: Client) -> None:
    f = client.submit(inc, 10)
    assert f.result(timeout=10) == 11
    assert f.status == "finished" and f.done()
    assert f.type is int
    assert repr(f).startswith("<Future: inc status: finished, type: int, key: inc-")
    assert "finished" in f._repr_html_()
    pending = client.submit(slow_inc, 1, 2.0)
    assert "status: pending" in repr(pending)


def test_pure_keys_are_shared_and_impure_keys_are_not(client: Client) -> None:
    a = client.submit(inc, 41)
    b = client.submit(inc, 41)
    assert a.key == b.key
    c = client.submit(inc, 41, pure=False)
    assert c.key != a.key
    assert client.submit(inc, 1, key="my-key").key == "my-key"
    assert a.result(timeout=10) == b.result(timeout=10) == c.result(timeout=10) == 42


def test_map_and_gather_structures(client: Client) -> None:
    futures = client.map(add, range(100), range(100))
    assert client.gather(futures) == [2 * i for i in range(100)]
    assert client.gather({"x": futures[1], "y": [futures[2], (futures[3],)]}) == {"x": 2, "y": [4, (6,)]}
    assert client.gather(futures[5]) == 10
    keyed = client.map(inc, [1, 2], key=["k1", "k2"])
    assert [f.key for f in keyed] == ["k1", "k2"]


def test_results_released_when_futures_are_dropped(client: Client) -> None:
    f = client.submit(inc, 100)
    key = f.key
    f.result(timeout=10)
    assert client.who_has([f])[key]
    del f
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = client.task_states()
        held = [k for keys in client.has_what().values() for k in keys]
        if key not in states and key not in held:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"{key} was not released: {client.task_states()}")


def test_the_client_keeps_no_large_argument_once_its_future_is_dropped(client: Client) -> None:
    """``submit(f, array)`` sends the array's memory without copying it;
    what the client keeps to send again after a reconnection must not keep
    the array alive once the user dropped it and the future."""
    import weakref

    import numpy as np

    arrays = [np.ones(1_000_000) for _ in range(3)]
    refs = [weakref.ref(a) for a in arrays]
    futures = [client.submit(np.sum, a) for a in arrays]
    assert client.gather(futures) == [1_000_000.0] * 3
    del arrays, futures
    gc.collect()
    assert [r() is None for r in refs] == [True, True, True]


def boom(x: int) -> int:
    raise ValueError(f"bad input {x}")


def test_an_erred_future_is_released_once_its_exception_was_raised_and_dropped(client: Client) -> None:
    """Raising the exception must not tie the future to its own state (a
    cached exception object held the frames, and so the future, for good)."""
    f = client.submit(boom, 4)
    key = f.key
    for _ in range(2):
        try:
            f.result(timeout=10)
        except ValueError:
            pass
    assert isinstance(f.exception(), ValueError)
    del f
    gc.collect()
    deadline = time.monotonic() + 10
    while key in client.task_states():
        if time.monotonic() > deadline:
            pytest.fail(f"{key} was not released: {client.task_states()}")
        time.sleep(0.02)


def test_user_exceptions_keep_type_and_traceback(client: Client) -> None:
    f = client.submit(boom, 3)
    with pytest.raises(ValueError, match="bad input 3") as info:
        f.result(timeout=10)
    assert f.status == "error"
    assert isinstance(f.exception(), ValueError)
    tb = f.traceback()
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "boom" in names
    assert "boom" in "".join(str(info.value.__cause__))
    assert client.gather([f, client.submit(inc, 1)], errors="skip") == [2]
    with pytest.raises(ValueError):
        client.gather([f])


def test_timeout_on_result(client: Client) -> None:
    f = client.submit(slow_inc, 1, 2.0)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.1)
    assert f.result(timeout=10) == 2


def test_dependencies_move_between_workers_not_through_the_client(client: Client) -> None:
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2
    big = client.submit(lambda: list(range(200_000)), workers=[workers[0]], pure=False)
    total = client.submit(sum, big, workers=[workers[1]], pure=False)
    assert total.result(timeout=20) == sum(range(200_000))
    assert set(client.who_has([big])[big.key]) == set(workers)


def test_client_from_address_and_context_manager(cluster) -> None:  # type: ignore[no-untyped-def]
    with Client(cluster.scheduler_address) as c:
        assert c.submit(inc, 1).result(timeout=10) == 2
    assert c.status == "closed"


def test_future_misuse_has_clear_errors(client: Client) -> None:
    f = client.submit(inc, 1)
    with pytest.raises(TypeError, match="result"):
        f()
    with pytest.raises(TypeError, match="callable"):
        client.submit(1)
    assert isinstance(f, Future)


def make_big(n: int) -> Any:
    import numpy as np

    return np.arange(n, dtype="f8")


def total(a: Any) -> float:
    return float(a.sum())


@pytest.mark.parametrize("shm_setting", ["on", "off"])
def test_large_values_between_workers_and_to_the_client(shm_setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same host: shared memory (or TCP with SHOAL_SHM=off); the values and
    the isolation between copies are the same either way."""
    np = pytest.importorskip("numpy")
    monkeypatch.setenv("SHOAL_SHM", shm_setting)  # the cluster's processes inherit it
    n = 2_000_000  # 16 MB, above the shared-memory threshold
    with Client(n_workers=2, threads_per_worker=1) as c:
        a, b = sorted(c.scheduler_info()["workers"])
        big = c.submit(make_big, n, workers=[a], pure=False)
        assert c.submit(total, big, workers=[b], pure=False).result(timeout=30) == np.arange(n).sum()
        local = c.gather(big)
        local[0] = 12345.0  # the client's copy is its own
        assert c.submit(lambda x: float(x[0]), big, workers=[a], pure=False).result(timeout=30) == 0.0
        scattered = c.scatter(np.ones(n), hash=False)
        assert c.submit(total, scattered, workers=[b], pure=False).result(timeout=30) == n


def test_a_task_raising_reschedule_runs_again(client: Client, tmp_path: Path) -> None:
    """``Reschedule`` stops the task and has the scheduler run it again: the
    future never errs (dask's semantics; where it runs next is the scheduler's choice)."""
    marker = tmp_path / "attempts"

    def flaky_placement(path: str) -> int:
        import pathlib

        import shoal

        p = pathlib.Path(path)
        attempts = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(attempts))
        if attempts < 3:
            raise shoal.Reschedule()
        return attempts

    f = client.submit(flaky_placement, str(marker), pure=False)
    assert f.result(timeout=20) == 3
    assert f.status == "finished"


def test_future_type_bind_client_and_substitute(client: Client) -> None:
    """dask's Future members: ``type`` is the type itself, ``bind_client``
    moves the handle to another client, ``substitute`` is TaskRef's."""
    f = client.submit(sum, [1, 2])
    f.result(timeout=10)
    assert f.type is int
    g = client.submit(lambda: {"a": 1})
    g.result(timeout=10)
    assert g.type is dict
    assert f.substitute({f.key: 42}) == 42 and f.substitute({}) is f
    with Client(client.cluster if client.cluster is not None else client.scheduler_address) as other:
        h = Future(f.key, client)
        h.bind_client(other)
        assert h.client is other and h.result(timeout=10) == 3
    with pytest.raises(ValueError, match="state"):
        Future(f.key, client, state=g._state)


def test_a_collection_during_submit_cannot_strand_the_new_future(client: Client) -> None:
    """The key's last old future, held only by a reference cycle, is freed by
    a garbage collection that runs while submit makes the new future: the
    new future must still get its task (it stayed pending forever)."""
    import gc

    class Cycle:
        pass

    old = client.submit(inc, 1)
    assert old.result(timeout=10) == 2
    holder = Cycle()
    holder.self, holder.future = holder, old  # type: ignore[attr-defined]
    del old, holder
    original = Future.__init__

    def collecting_init(self: Future[Any], *args: Any, **kwargs: Any) -> None:
        gc.collect()  # frees the cycle now, in the middle of submit
        original(self, *args, **kwargs)

    Future.__init__ = collecting_init  # type: ignore[method-assign]
    try:
        new = client.submit(inc, 1)
    finally:
        Future.__init__ = original  # type: ignore[method-assign]
    assert new.result(timeout=10) == 2
