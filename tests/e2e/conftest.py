"""Helpers for the seed-document tests.

The ``cluster`` (one real ``processes=True`` LocalCluster per module),
``client`` (a fresh client on it per test), ``wait_until``, ``forgotten`` and
``released`` fixtures come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shoal import Client, LocalCluster


@pytest.fixture
def own_client() -> Iterator[Callable[[], Client]]:
    """``own_client()``: a client on a cluster of its own (2 worker processes, 1 thread
    each), for examples whose tasks block on each other (queues, events, tasks that
    submit tasks): if they deadlock, they do not take the module's cluster with them.
    Called after the example's imports, so a missing feature costs no cluster start."""
    made: list[tuple[LocalCluster, Client]] = []

    def make() -> Client:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1)
        client = Client(cluster, timeout=10)
        made.append((cluster, client))
        return client

    yield make
    for cluster, client in reversed(made):
        client.close()
        cluster.close()
