"""The public API: what ``from shoal import ...`` offers, pinned."""

from __future__ import annotations

import subprocess
import sys

import shoal

PUBLIC = {
    "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "Actor", "ActorFuture",
    "BaseActorFuture", "CancelledError", "Client", "MultiLock", "Semaphore",
    "CommClosedError", "Event", "Future", "Lock", "Queue", "Variable", "FutureLost", "KilledWorker", "LocalCluster", "RemoteException",
    "Nanny", "Scheduler", "Worker", "Adaptive", "SpecCluster", "SSHCluster", "SubprocessCluster",
    "performance_report", "widgets",
    "SerializationError", "ShoalError", "as_completed", "default_client", "fire_and_forget",
    "futures_of", "get_client", "get_worker", "progress", "rejoin", "secede", "wait", "worker_client",
    "WorkerPlugin", "SchedulerPlugin", "NannyPlugin", "PipInstall", "CondaInstall", "InstallPlugin",
    "Environ", "UploadFile", "UploadDirectory", "Status", "sync", "TimeoutError",
    "CompatibleExecutor", "config", "dask", "rpc", "connect", "local_client", "get_task_metadata",
    "print", "warn", "get_task_stream", "Security", "AuthenticationError", "Reschedule", "span",
}


def test_all_names_are_exported_and_importable() -> None:
    assert set(shoal.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(shoal, name) is not None


def test_unknown_names_raise_attribute_error() -> None:
    try:
        shoal.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_server_processes_do_not_import_the_client() -> None:
    """Scheduler and worker processes import ``shoal`` too; the client (and
    dask) must stay out of their start-up time."""
    code = ("import sys, shoal.cluster.run, shoal.worker.server, shoal.scheduler.server; "
            "print(sorted(m for m in sys.modules if m.startswith(('shoal.client.core', 'dask'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
