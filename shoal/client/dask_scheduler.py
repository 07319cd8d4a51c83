"""Make ``dask.compute()`` run on shoal while a client is open, as it runs on
dask.distributed while a ``distributed.Client`` is.

One dispatcher function is installed as dask's ``scheduler`` setting while at
least one synchronous client is running; it sends each computation to the
most recently started client still running.  When the last one closes, the
setting the user had before comes back.  This works whatever the order in
which clients close, and whether dask is imported before or after the
client starts: shoal never imports dask itself for this (that would slow down
every ``Client()``), it waits for the user's ``import dask``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_clients: list[weakref.ref[Any]] = []  # running clients, oldest first
_saved: Any = None  # the dask.config.set(...) object to undo ours
_installed = False


def _current() -> Any:
    from shoal.client.core import current_client

    chosen = current_client.get()  # ``with client.as_current():``
    if chosen is not None and chosen.status == "running" and not chosen.asynchronous:
        return chosen
    for ref in reversed(_clients):
        c = ref()
        if c is not None and c.status == "running":
            return c
    return None


def _client() -> Any:
    client = _current()
    if client is None:
        raise RuntimeError("dask is set to compute on shoal, but no shoal client is running")
    return client


def dispatch_get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask's scheduler ``get``: run on the newest running shoal client."""
    return _client().get(dsk, keys, **kwargs)


def _dispatch_persist(collections: Any, optimize_graph: bool = True, **kwargs: Any) -> Any:
    """``dask.persist`` asks its scheduler for ``persist`` (a client's keeps
    the results on the workers, behind futures)."""
    return _client().persist(collections, optimize_graph=optimize_graph, **kwargs)


dispatch_get.persist = _dispatch_persist  # type: ignore[attr-defined]


def _install(dask: ModuleType) -> None:
    global _saved, _installed
    if _installed:
        return
    _saved = dask.config.set(scheduler=dispatch_get)
    _installed = True


def _uninstall() -> None:
    global _saved, _installed
    if not _installed:
        return
    saved, _saved, _installed = _saved, None, False
    try:
        saved.__exit__(None, None, None)
    except Exception:
        pass


def client_started(client: Any) -> None:
    with _lock:
        _clients.append(weakref.ref(client))
        dask = sys.modules.get("dask")
        if dask is not None and hasattr(dask, "config"):
            _install(dask)
        else:
            _watch_for_dask_import()


def client_closed(client: Any) -> None:
    with _lock:
        _clients[:] = [r for r in _clients if r() is not None and r() is not client]
        if _current() is None:
            _uninstall()


# -- waiting for "import dask" ---------------------------------------------------


class _DaskImportWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps dask's own loader to act once dask is loaded."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "dask":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _LoaderThen(spec.loader)
                return spec
        return None


class _LoaderThen(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _stop_watching()
        with _lock:
            if _current() is not None:
                _install(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_watcher: _DaskImportWatcher | None = None


def _watch_for_dask_import() -> None:
    global _watcher
    if _watcher is None:
        _watcher = _DaskImportWatcher()
        sys.meta_path.insert(0, _watcher)


def _stop_watching() -> None:
    global _watcher
    if _watcher is not None:
        try:
            sys.meta_path.remove(_watcher)
        except ValueError:
            pass
        _watcher = None
