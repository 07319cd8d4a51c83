"""shoal: a distributed futures engine with dask.distributed's futures API.

    from shoal import Client, wait, as_completed, fire_and_forget
    client = Client()                     # a local cluster of real processes
    future = client.submit(sum, [1, 2])   # runs on a worker
    future.result()                       # 3
"""

from shoal.client.core import Client, default_client
from shoal.client.future import Future
from shoal.client.progress import progress
from shoal.client.waiting import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    as_completed,
    fire_and_forget,
    wait,
)
from shoal.cluster.local import LocalCluster
from shoal.errors import (
    CancelledError,
    CommClosedError,
    FutureLost,
    KilledWorker,
    RemoteException,
    SerializationError,
    ShoalError,
)
from shoal.worker.context import get_client, get_worker, rejoin, secede, worker_client

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "Client",
    "CommClosedError",
    "Future",
    "FutureLost",
    "KilledWorker",
    "LocalCluster",
    "RemoteException",
    "SerializationError",
    "ShoalError",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "get_client",
    "get_worker",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "worker_client",
]
