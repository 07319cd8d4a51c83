"""shoal: a distributed futures engine with dask.distributed's futures API.

    from shoal import Client, wait, as_completed, fire_and_forget
    client = Client()                     # a local cluster of real processes
    future = client.submit(sum, [1, 2])   # runs on a worker
    future.result()                       # 3

The public names are imported on first use (PEP 562), so that scheduler and
worker processes, which import ``shoal`` too, do not pay for the client.
"""

from __future__ import annotations

import importlib

# not ``from typing import ...``: typing costs ~5 ms, and ``shoal.Client()``
# launches the fork server before anything heavy is imported
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Client": "shoal.client.client",
    "default_client": "shoal.client.core",
    "Future": "shoal.client.future",
    "progress": "shoal.client.progress",
    "ALL_COMPLETED": "shoal.client.waiting",
    "FIRST_COMPLETED": "shoal.client.waiting",
    "FIRST_EXCEPTION": "shoal.client.waiting",
    "as_completed": "shoal.client.waiting",
    "fire_and_forget": "shoal.client.waiting",
    "futures_of": "shoal.client.structure",
    "get_task_stream": "shoal.client.task_stream",
    "performance_report": "shoal.client.performance_report",
    "wait": "shoal.client.waiting",
    "LocalCluster": "shoal.cluster.local",
    "Adaptive": "shoal.deploy.adaptive",
    "SpecCluster": "shoal.deploy.spec",
    "SSHCluster": "shoal.deploy.ssh",
    "SubprocessCluster": "shoal.deploy.subprocess_cluster",
    "Nanny": "shoal.deploy.nanny",
    "Scheduler": "shoal.deploy.scheduler",
    "Worker": "shoal.deploy.worker",
    "Event": "shoal.client.primitives",
    "Queue": "shoal.client.primitives",
    "Variable": "shoal.client.primitives",
    "Lock": "shoal.client.semaphore",
    "Semaphore": "shoal.client.semaphore",
    "MultiLock": "shoal.client.multilock",
    "Actor": "shoal.client.actor",
    "ActorFuture": "shoal.client.actor",
    "BaseActorFuture": "shoal.client.actor",
    "CancelledError": "shoal.errors",
    "CommClosedError": "shoal.errors",
    "FutureLost": "shoal.errors",
    "KilledWorker": "shoal.errors",
    "RemoteException": "shoal.errors",
    "SerializationError": "shoal.errors",
    "ShoalError": "shoal.errors",
    "AuthenticationError": "shoal.errors",
    "Security": "shoal.security",
    "Reschedule": "shoal.errors",
    "span": "shoal.spans",
    "get_client": "shoal.worker.context",
    "get_worker": "shoal.worker.context",
    "rejoin": "shoal.worker.context",
    "secede": "shoal.worker.context",
    "worker_client": "shoal.worker.context",
    "Status": "shoal.status",
    "rpc": "shoal.comm.rpc",
    "connect": "shoal.comm.rpc",
    "local_client": "shoal.worker.context",
    "get_task_metadata": "shoal.client.task_metadata",
    "sync": "shoal.client.loop",
    "WorkerPlugin": "shoal.plugins",
    "SchedulerPlugin": "shoal.plugins",
    "NannyPlugin": "shoal.plugins",
    "PipInstall": "shoal.plugins",
    "CondaInstall": "shoal.plugins",
    "InstallPlugin": "shoal.plugins",
    "Environ": "shoal.plugins",
    "UploadFile": "shoal.plugins",
    "UploadDirectory": "shoal.plugins",
    "print": "shoal.worker.printing",
    "warn": "shoal.worker.printing",
}

#: public names that are builtins too (``shoal.print``): never cached in this
#: module's globals, where they would replace the builtin for its own code
_SHADOWS_BUILTIN = frozenset({"print"})

#: modules that are part of the API: ``shoal.config.set(...)``, ``shoal.dask``
_MODULES = {"config": "shoal.config", "dask": "dask", "widgets": "shoal.widgets"}

__all__ = sorted([*_EXPORTS, *_MODULES, "TimeoutError", "CompatibleExecutor"])

#: what dask.distributed calls TimeoutError: the builtin, which shoal raises
TimeoutError = TimeoutError


def CompatibleExecutor(*args: Any, **kwargs: Any) -> Any:
    """Gone from dask.distributed too: use ``client.get_executor()``."""
    raise NotImplementedError("CompatibleExecutor was replaced by Client.get_executor()")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        try:
            return importlib.import_module(_MODULES[name])
        except ImportError:
            if name == "dask":
                raise AttributeError("shoal.dask needs dask: pip install 'shoal[dask]'") from None
            raise
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name not in _SHADOWS_BUILTIN:  # this module's own code keeps the builtin print
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES))

if TYPE_CHECKING:  # what the names above are, for type checkers and IDEs
    from shoal.client.actor import (
        Actor as Actor,
    )
    from shoal.client.actor import (
        ActorFuture as ActorFuture,
    )
    from shoal.client.actor import (
        BaseActorFuture as BaseActorFuture,
    )
    from shoal.client.client import Client as Client
    from shoal.client.core import default_client as default_client
    from shoal.client.future import Future as Future
    from shoal.client.loop import sync as sync
    from shoal.client.multilock import MultiLock as MultiLock
    from shoal.client.performance_report import performance_report as performance_report
    from shoal.client.primitives import Event as Event
    from shoal.client.primitives import Queue as Queue
    from shoal.client.primitives import Variable as Variable
    from shoal.client.progress import progress as progress
    from shoal.client.semaphore import Lock as Lock
    from shoal.client.semaphore import Semaphore as Semaphore
    from shoal.client.structure import futures_of as futures_of
    from shoal.client.task_metadata import get_task_metadata as get_task_metadata
    from shoal.client.task_stream import get_task_stream as get_task_stream
    from shoal.client.waiting import (
        ALL_COMPLETED as ALL_COMPLETED,
    )
    from shoal.client.waiting import (
        FIRST_COMPLETED as FIRST_COMPLETED,
    )
    from shoal.client.waiting import (
        FIRST_EXCEPTION as FIRST_EXCEPTION,
    )
    from shoal.client.waiting import (
        as_completed as as_completed,
    )
    from shoal.client.waiting import (
        fire_and_forget as fire_and_forget,
    )
    from shoal.client.waiting import (
        wait as wait,
    )
    from shoal.cluster.local import LocalCluster as LocalCluster
    from shoal.comm.rpc import connect as connect
    from shoal.comm.rpc import rpc as rpc
    from shoal.deploy.adaptive import Adaptive as Adaptive
    from shoal.deploy.nanny import (
        Nanny as Nanny,
    )
    from shoal.deploy.scheduler import (
        Scheduler as Scheduler,
    )
    from shoal.deploy.spec import SpecCluster as SpecCluster
    from shoal.deploy.ssh import SSHCluster as SSHCluster
    from shoal.deploy.subprocess_cluster import SubprocessCluster as SubprocessCluster
    from shoal.deploy.worker import (
        Worker as Worker,
    )
    from shoal.errors import (
        AuthenticationError as AuthenticationError,
    )
    from shoal.errors import (
        CancelledError as CancelledError,
    )
    from shoal.errors import (
        CommClosedError as CommClosedError,
    )
    from shoal.errors import (
        FutureLost as FutureLost,
    )
    from shoal.errors import (
        KilledWorker as KilledWorker,
    )
    from shoal.errors import (
        RemoteException as RemoteException,
    )
    from shoal.errors import (
        Reschedule as Reschedule,
    )
    from shoal.errors import (
        SerializationError as SerializationError,
    )
    from shoal.errors import (
        ShoalError as ShoalError,
    )
    from shoal.plugins import (
        CondaInstall as CondaInstall,
    )
    from shoal.plugins import (
        Environ as Environ,
    )
    from shoal.plugins import (
        InstallPlugin as InstallPlugin,
    )
    from shoal.plugins import (
        NannyPlugin as NannyPlugin,
    )
    from shoal.plugins import (
        PipInstall as PipInstall,
    )
    from shoal.plugins import (
        SchedulerPlugin as SchedulerPlugin,
    )
    from shoal.plugins import (
        UploadDirectory as UploadDirectory,
    )
    from shoal.plugins import (
        UploadFile as UploadFile,
    )
    from shoal.plugins import (
        WorkerPlugin as WorkerPlugin,
    )
    from shoal.security import Security as Security
    from shoal.spans import span as span
    from shoal.status import Status as Status
    from shoal.worker.context import (
        get_client as get_client,
    )
    from shoal.worker.context import (
        get_worker as get_worker,
    )
    from shoal.worker.context import (
        local_client as local_client,
    )
    from shoal.worker.context import (
        rejoin as rejoin,
    )
    from shoal.worker.context import (
        secede as secede,
    )
    from shoal.worker.context import (
        worker_client as worker_client,
    )
    from shoal.worker.printing import print as print
    from shoal.worker.printing import warn as warn
