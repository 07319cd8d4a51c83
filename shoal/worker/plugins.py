"""Plugins on a worker: the worker side of ``client.register_plugin`` and
``client.upload_file`` (the plugin classes are in ``shoal/plugins.py``).

A worker extension (``WorkerServer.add_extension``).  The scheduler sends a
plugin to running workers with the request ``plugin_add``; a worker that
joins later gets every registered plugin in the scheduler's ``Welcome`` and
sets them up in ``setup_at_start``, before it handles any message, so no
task runs on it before its plugins are in place.  Nanny plugins are set up
first (shoal has no nanny process per worker: see ``shoal/plugins.py``).

Plugin methods may be coroutine functions; plain ones run on the event loop
thread, as in dask.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
import tempfile
from importlib.util import cache_from_source
from typing import Any

from shoal.extensions import call
from shoal.protocol.serialize import Payload, loads

logger = logging.getLogger("shoal.worker")

#: the kinds of plugin a worker holds, in the order they are set up
KINDS = ("nanny", "worker")


def worker_directory(worker: Any) -> str:
    """The worker's own directory (``local_directory``), made on first use
    when it was not given one."""
    directory = getattr(worker, "local_directory", None)
    if not directory:
        directory = tempfile.mkdtemp(prefix="shoal-worker-")
        worker.local_directory = directory
        owned = getattr(worker, "_owned_directories", None)
        if owned is not None:
            owned.append(directory)
    os.makedirs(directory, exist_ok=True)
    return str(directory)


def install_file(directory: str, filename: str, data: bytes, load: bool) -> list[str]:
    """Write an uploaded file into ``directory``; a ``.py``, ``.zip``,
    ``.egg`` or ``.pyz`` becomes importable (``directory`` or the archive on
    ``sys.path``) and, with ``load``, is imported afresh.  Returns the names
    of the modules it (re)imported."""
    if os.sep in filename or (os.altsep and os.altsep in filename) or filename in ("", ".", ".."):
        raise ValueError(f"an uploaded file needs a plain file name, not {filename!r}")
    path = os.path.join(directory, filename)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    name, ext = os.path.splitext(filename)
    names: list[str] = []
    if ext == ".py":
        with contextlib.suppress(OSError):
            os.remove(cache_from_source(path))  # never a stale .pyc of an older upload
        if directory not in sys.path:
            sys.path.insert(0, directory)
        names.append(name)
    elif ext in (".zip", ".egg", ".pyz"):
        if path not in sys.path:
            sys.path.insert(0, path)
        names.extend(info.name for info in pkgutil.iter_modules([path]))
    importlib.invalidate_caches()
    if not load:
        return []
    for module in names:
        if module in sys.modules:
            importlib.reload(sys.modules[module])
        else:
            importlib.import_module(module)
    return names


class WorkerPlugins:
    """The plugins on one worker, by kind and name."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.plugins: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        # plugins with a transition method, called as tasks start and end
        self.observers: list[Any] = []

    async def setup_at_start(self, registered: dict[str, dict[str, Payload]]) -> None:
        """Set up what the scheduler had registered when we joined.  A plugin
        that fails is logged and left out; the worker still joins."""
        for kind in KINDS:
            for name, payload in (registered.get(kind) or {}).items():
                try:
                    await self.rpc_plugin_add(name, payload, kind)
                except Exception:
                    logger.exception("worker %s: %s plugin %r failed to set up",
                                     self.worker.address, kind, name)

    async def rpc_plugin_add(self, name: str, plugin: Payload, kind: str = "worker") -> str:
        return await self.add(name, loads(plugin), kind)

    async def add(self, name: str, instance: Any, kind: str = "worker") -> str:
        """Set up ``instance`` (replacing, torn down first, one of that name)."""
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}")
        old = self.plugins[kind].pop(name, None)
        if old is not None:
            await self._teardown(kind, name, old)
        setup = getattr(instance, "setup", None)
        if setup is not None:
            await call(setup, self._target(kind))
        self.plugins[kind][name] = instance
        self._find_observers()
        return "OK"

    async def rpc_plugin_remove(self, name: str, kind: str = "worker") -> str:
        instance = self.plugins.get(kind, {}).pop(name, None)
        if instance is None:
            raise ValueError(f"worker {self.worker.address} has no {kind} plugin {name!r}")
        self._find_observers()
        teardown = getattr(instance, "teardown", None)
        if teardown is not None:
            await call(teardown, self._target(kind))
        return "OK"

    async def teardown_all(self) -> None:
        """At the worker's close: every plugin's teardown, newest first."""
        for kind in reversed(KINDS):
            for name, instance in reversed(list(self.plugins[kind].items())):
                await self._teardown(kind, name, instance)
            self.plugins[kind].clear()
        self.observers = []

    def _target(self, kind: str) -> Any:
        """What a plugin's methods receive: the worker, or for a nanny plugin
        a stand-in for the nanny shoal does not have."""
        return self.worker if kind == "worker" else NannyView(self.worker)

    async def _teardown(self, kind: str, name: str, instance: Any) -> None:
        teardown = getattr(instance, "teardown", None)
        if teardown is None:
            return
        try:
            await call(teardown, self._target(kind))
        except Exception:
            logger.exception("worker %s: teardown of %s plugin %r failed",
                             self.worker.address, kind, name)

    def _find_observers(self) -> None:
        from shoal.plugins import WorkerPlugin

        self.observers = [p for p in self.plugins["worker"].values()
                          if getattr(type(p), "transition", WorkerPlugin.transition)
                          is not WorkerPlugin.transition]

    def transition(self, key: str, start: str, finish: str, **kwargs: Any) -> None:
        """Tell the plugins that watch transitions (never raises)."""
        for plugin in self.observers:
            try:
                plugin.transition(key, start, finish, **kwargs)
            except Exception:
                logger.exception("worker %s: plugin %r failed in transition", self.worker.address,
                                 type(plugin).__name__)


class NannyView:
    """What a ``NannyPlugin`` receives as ``nanny`` in shoal: the worker's
    process stands in for dask's nanny process.  ``env`` is this process's
    environment (``nanny.env.update(...)`` sets variables tasks see)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.env = os.environ
        self.worker_address = worker.address
        self.name = worker.name

    @property
    def local_directory(self) -> str:
        return worker_directory(self.worker)


def run_blocking(fn: Any, *args: Any) -> Any:
    """For plugin code that blocks (installers): run it off the event loop."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)
