"""Shared fixtures: real clusters of real processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

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


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def shoal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shoal-")]
