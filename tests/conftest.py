"""Shared fixtures: real clusters of real processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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


def shoal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shoal-")]
