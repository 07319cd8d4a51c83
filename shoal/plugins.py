"""Plugins: code that runs on every worker (present and future), on the
scheduler, or where a worker is started, registered with
``client.register_plugin(plugin)``, as in dask.distributed.

    class Warm(WorkerPlugin):
        def setup(self, worker):
            worker.cache = load_model()
    client.register_plugin(Warm())

    client.register_plugin(PipInstall(["scikit-learn"]))
    client.register_plugin(Environ({"OMP_NUM_THREADS": "1"}))
    client.register_plugin(UploadFile("helpers.py"))

Kinds, by base class:

* ``WorkerPlugin``: ``setup(worker)`` runs on each worker when registered,
  and on every worker that joins later before it runs any task;
  ``teardown(worker)`` when unregistered or when the worker closes;
  ``transition(key, start, finish, **kwargs)`` as a task starts
  ("ready" -> "executing") and ends ("executing" -> "memory" or "error").
* ``SchedulerPlugin``: lives in the scheduler process (the only user code
  there besides ``run_on_scheduler``); ``start(scheduler)``, ``close()``,
  ``add_worker``, ``remove_worker``, ``add_client``, ``remove_client``,
  ``update_graph``, ``transition``, ``restart`` are called as those happen.
* ``NannyPlugin``: shoal has no nanny process per worker (one supervisor
  starts them all), so a nanny plugin's ``setup`` runs in the worker's
  own process, before it joins the scheduler: what it sets there (an
  environment variable, a file) is in place before any task runs.  One
  with ``restart = True`` registered while workers are running restarts
  them, so that their new processes start with it, as in dask.

Every method may be a coroutine function.  A plugin is pickled on the client
and unpickled where it runs; the scheduler keeps worker and nanny plugins
pickled (it never runs them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

__all__ = [
    "CondaInstall",
    "Environ",
    "InstallPlugin",
    "NannyPlugin",
    "PipInstall",
    "SchedulerPlugin",
    "UploadDirectory",
    "UploadFile",
    "WorkerPlugin",
]


class WorkerPlugin:
    """Runs on every worker; override what you need.  ``name`` (if set)
    identifies it: registering another plugin under the same name replaces
    it (teardown of the old one first); ``idempotent = True`` makes a second
    registration under that name a no-op instead."""

    name: str | None = None
    idempotent: bool = False

    def setup(self, worker: Any) -> Any:
        """Called when the plugin reaches a worker (before it runs tasks, for a
        worker that joins later)."""

    def teardown(self, worker: Any) -> Any:
        """Called when the plugin is removed or the worker closes."""

    def transition(self, key: str, start: str, finish: str, **kwargs: Any) -> None:
        """Called as a task on this worker starts and ends."""


class SchedulerPlugin:
    """Runs in the scheduler process; override what you need."""

    name: str | None = None
    idempotent: bool = False

    async def start(self, scheduler: Any) -> None:
        """Called once registered (or when the scheduler starts)."""

    async def before_close(self) -> None:
        """Called as the scheduler starts closing."""

    async def close(self) -> None:
        """Called when unregistered or when the scheduler closes."""

    def update_graph(self, scheduler: Any, *, client: str, keys: set[str], **kwargs: Any) -> None:
        """Called when a client submits tasks (``keys``: the new ones)."""

    def restart(self, scheduler: Any) -> None:
        """Called when the cluster restarts."""

    def transition(self, key: str, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        """Called after each task transition on the scheduler (in batches:
        after each message the scheduler handled)."""

    def add_worker(self, scheduler: Any, worker: str) -> None:
        """Called when a worker joins."""

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Called when a worker leaves."""

    def add_client(self, scheduler: Any, client: str) -> None:
        """Called when a client connects."""

    def remove_client(self, scheduler: Any, client: str) -> None:
        """Called when a client disconnects."""

    def log_event(self, topic: str, msg: Any) -> None:
        """Called when an event is logged (``log_event``), once per topic."""


class NannyPlugin:
    """Runs where a worker is started (in shoal: in the worker's process,
    before it joins; see the module docstring).  ``restart = True``: running
    workers restart when it is registered."""

    name: str | None = None
    idempotent: bool = False
    restart: bool = False

    def setup(self, nanny: Any) -> Any:
        """Called before the worker joins the scheduler."""

    def teardown(self, nanny: Any) -> Any:
        """Called when the plugin is removed or the worker closes."""


class WorkerCallback(WorkerPlugin):
    """``client.register_worker_callbacks(setup)``: a worker plugin running
    ``setup()``, or ``setup(dask_worker=worker)`` if it takes that argument."""

    def __init__(self, setup: Any) -> None:
        self._setup = setup

    def setup(self, worker: Any) -> Any:
        import inspect

        try:
            takes_worker = "dask_worker" in inspect.signature(self._setup).parameters
        except (TypeError, ValueError):
            takes_worker = False
        return self._setup(dask_worker=worker) if takes_worker else self._setup()


# ---------------------------------------------------------------------------
# stock plugins
# ---------------------------------------------------------------------------


class Environ(NannyPlugin):
    """Set environment variables in every worker before it starts working."""

    restart = True

    def __init__(self, environ: dict[str, Any] | None = None) -> None:
        self.environ = {str(k): str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny: Any) -> None:
        nanny.env.update(self.environ)


class InstallPlugin(NannyPlugin):
    """Install software on every worker (and every worker that joins
    later) by calling ``install_fn()`` there, once per worker process, before
    it runs tasks; with ``restart_workers``, running workers restart first so
    that the new software is imported fresh.  A failed install raises in
    ``register_plugin``.  (dask also runs it on the scheduler; shoal's
    scheduler never runs user code that would need it.)"""

    idempotent = True

    def __init__(self, install_fn: Any, restart_workers: bool) -> None:
        if not callable(install_fn):
            raise TypeError(f"install_fn must be callable, got {install_fn!r}")
        self._install_fn = install_fn
        self.restart_workers = restart_workers
        self.restart = restart_workers
        self.name = f"{type(self).__name__}-{install_fn!r}"

    async def setup(self, nanny: Any) -> None:
        from shoal.worker.plugins import run_blocking

        await run_blocking(self._install_fn)  # installers block: off the event loop
        import importlib

        importlib.invalidate_caches()


class _CommandInstaller:
    """``install_fn`` of the stock installers: run a command, raise with its
    output if it fails."""

    def __init__(self, label: str, command: list[str]) -> None:
        self.label = label
        self.command = command

    def __call__(self) -> None:
        proc = subprocess.run(self.command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} failed with exit code {proc.returncode}: "
                               f"{' '.join(self.command)}\n{proc.stderr.strip()[-4000:]}")

    def __repr__(self) -> str:
        return f"{self.label}{self.command[self.command.index('install') + 1:]!r}"


def _packages(packages: Any) -> list[str]:
    if isinstance(packages, str) or not all(isinstance(p, str) for p in packages):
        raise TypeError(f"packages must be a list of strings, got {packages!r}")
    return list(packages)


class PipInstall(InstallPlugin):
    """``pip install`` packages on every worker, with the worker's Python:
    ``PipInstall(["scikit-learn"], pip_options=["--upgrade"])``."""

    def __init__(self, packages: list[str], pip_options: list[str] | None = None,
                 restart_workers: bool = False) -> None:
        self.packages = _packages(packages)
        self.pip_options = list(pip_options or [])
        super().__init__(_CommandInstaller("pip", [sys.executable, "-m", "pip", "install",
                                                   *self.pip_options, *self.packages]),
                         restart_workers)


class CondaInstall(InstallPlugin):
    """``conda install`` packages on every worker (conda must be on its PATH)."""

    def __init__(self, packages: list[str], conda_options: list[str] | None = None,
                 restart_workers: bool = False) -> None:
        self.packages = _packages(packages)
        self.conda_options = list(conda_options or [])
        super().__init__(_CommandInstaller("conda", ["conda", "install", "--yes",
                                                     *self.conda_options, *self.packages]),
                         restart_workers)


class UploadFile(WorkerPlugin):
    """Copy a local file to every worker's directory; a ``.py``, ``.zip``,
    ``.egg`` or ``.pyz`` becomes importable there (and is imported, with ``load``)."""

    def __init__(self, filepath: str, load: bool = True) -> None:
        with open(filepath, "rb") as f:
            self.data = f.read()
        self.filename = os.path.basename(filepath)
        self.load = load
        self.name = f"upload-file-{self.filename}"

    def setup(self, worker: Any) -> None:
        from shoal.worker.plugins import install_file, worker_directory

        install_file(worker_directory(worker), self.filename, self.data, self.load)


class UploadDirectory(NannyPlugin):
    """Copy a local directory to every worker's directory; with
    ``update_path`` the copy goes on ``sys.path`` there (its modules become
    importable), as in dask.
    ``skip_words``: leave out paths containing any of these words;
    ``skip``: functions of a path that return True to leave it out."""

    def __init__(self, path: str, restart_workers: bool = False, update_path: bool = False,
                 skip_words: tuple[str, ...] = (".git", ".github", ".pytest_cache", "tests",
                                                "docs"),
                 skip: tuple[Any, ...] = (lambda fn: os.path.splitext(fn)[1] == ".pyc",),
                 mode: str = "workers", restart: bool | None = None) -> None:
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise ValueError(f"UploadDirectory needs a directory, {path!r} is not one")
        if mode != "workers":
            raise NotImplementedError(f"UploadDirectory(mode={mode!r}): shoal uploads to the "
                                      "workers only (its scheduler runs no user code needing it)")
        self.dirname = os.path.basename(path)
        self.restart = bool(restart_workers if restart is None else restart)
        self.restart_workers = self.restart
        self.update_path = update_path
        self.files: dict[str, bytes] = {}
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not any(w in d for w in skip_words)]
            for fn in files:
                full = os.path.join(root, fn)
                rel = os.path.relpath(full, path)
                if any(w in rel for w in skip_words) or any(s(full) for s in skip):
                    continue
                with open(full, "rb") as f:
                    self.files[rel] = f.read()
        self.name = f"upload-directory-{self.dirname}"

    def setup(self, nanny: Any) -> None:
        target = os.path.join(nanny.local_directory, self.dirname)
        for rel, data in self.files.items():
            full = os.path.join(target, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        if self.update_path and target not in sys.path:
            sys.path.insert(0, target)
            import importlib

            importlib.invalidate_caches()
