"""Shared fixtures: real clusters of real processes."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from shoal import Client, LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes with one thread each, shared by a test module."""
    with LocalCluster(n_workers=2, threads_per_worker=1, validate=True) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A fresh client on the module's cluster; afterwards the scheduler must
    have forgotten everything the test left behind."""
    with Client(cluster, timeout=10) as c:
        yield c


@pytest.fixture
def inproc_client() -> Iterator[Client]:
    """Scheduler and two workers inside this process (processes=False)."""
    with Client(n_workers=2, threads_per_worker=1, processes=False, validate=True) as c:
        yield c


def token_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment for another process that connects to ``cluster``:
    this one's, plus the cluster's token (every LocalCluster has its own)."""
    import os

    assert cluster.security.token is not None
    return {**os.environ, "SHOAL_TOKEN": cluster.security.token}


def poll_until(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def shoal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shoal-")]


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """``wait_until(predicate, timeout=10)``: poll until true; returns the last answer."""
    return _wait_until


def _keys_checker(client: Client, settled: Callable[[set[str], dict[str, str]], bool]
                  ) -> Callable[..., bool]:
    """``check(keys, timeout=10)``: after a ``gc.collect()``, poll until no
    worker holds the data of ``keys`` and ``settled(keys, task_states)``."""

    def check(keys: Iterable[str], timeout: float = 10.0) -> bool:
        wanted = set(keys)
        gc.collect()

        def gone() -> bool:
            states = client.task_states()
            held = {k for ks in client.has_what().values() for k in ks}
            return not (wanted & held) and settled(wanted, states)

        return _wait_until(gone, timeout, 0.02)

    return check


@pytest.fixture
def forgotten(client: Client) -> Callable[..., bool]:
    """``forgotten(keys, timeout=10)``: True once the scheduler has no record of
    any of ``keys`` and no worker holds their data (after a ``gc.collect()``)."""
    return _keys_checker(client, lambda keys, states: not (keys & set(states)))


@pytest.fixture
def released(client: Client) -> Callable[..., bool]:
    """``released(keys, timeout=10)``: True once no worker holds the data of ``keys``
    and the scheduler keeps at most a ``released`` record of them (as dask does for a
    key that finished dependents still point at)."""
    return _keys_checker(
        client, lambda keys, states: all(states.get(k, "released") == "released" for k in keys)
    )


# -- spilling, for the tests of what the dashboard shows of it


def filled(i: int) -> Any:
    import numpy as np

    return np.full(5_000_000 // 8, i, dtype=np.float64)


def first(a: Any) -> float:
    return float(a[0])


def read_back_on_the_worker(c: Client, future: Any) -> None:
    """Once ``future``'s value is spilled, a task reads it back from disk
    (the client may hold its own copy already: a mapping of shared memory)."""
    from shoal import wait

    wait(future, timeout=60)
    assert poll_until(lambda: any(c.run(lambda key, dask_worker: key in dask_worker.data.disk,
                                        future.key).values()), 30)
    assert c.submit(first, future).result(timeout=30) == 0.0
