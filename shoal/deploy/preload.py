"""Preload modules: user code a scheduler or worker runs when it starts and
stops (``--preload``, ``preload=``), as dask.distributed's.

A preload is a module name (``mypackage.setup``), a path to a ``.py`` file,
or the text of a module (anything with a space in it).  Its optional
functions::

    def dask_setup(worker_or_scheduler): ...     # after start (may be async)
    def dask_teardown(worker_or_scheduler): ...  # before close (may be async)

``preload_argv`` (``--preload-argv "--flag 3"`` or trailing arguments on the
command line) go to the one preload whose ``dask_setup`` is a ``click``
command, as in dask (arguments with no such preload, or two such preloads,
are an error).  Preloads from web
addresses (dask downloads and runs them) are refused: download the file and
pass its path.

A preload that fails to import stops the server from starting (the error
names the preload); one whose ``dask_setup`` or ``dask_teardown`` raises is
logged and the server carries on, as in dask.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
import uuid
from types import ModuleType
from typing import Any

logger = logging.getLogger("shoal.preload")


def _as_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{what} must be a string or a list of strings, got {value!r}")


def _load_file(path: str) -> ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    taken = sys.modules.get(name)
    if taken is not None and getattr(taken, "__file__", None) != path:
        name = f"{name}_{uuid.uuid4().hex[:8]}"  # never shadow another module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_preload(name: str) -> ModuleType:
    """The module a preload names (imported now)."""
    if name.startswith(("http://", "https://")):
        raise NotImplementedError(
            f"preload {name!r}: shoal does not download and run code from web addresses; "
            "download the file and pass its path")
    try:
        if name.endswith(".py"):
            return _load_file(os.path.abspath(os.path.expanduser(name)))
        if " " in name or "\n" in name:  # the text of a module
            directory = tempfile.mkdtemp(prefix="shoal-preload-")
            path = os.path.join(directory, f"preload_{uuid.uuid4().hex[:8]}.py")
            with open(path, "w") as f:
                f.write(name)
            return _load_file(path)
        return importlib.import_module(name)
    except (ImportError, OSError, SyntaxError) as e:
        raise ImportError(f"could not load preload {name!r}: {type(e).__name__}: {e}") from e


def _is_click_command(obj: Any) -> bool:
    return hasattr(obj, "make_context") and hasattr(obj, "callback")


class Preload:
    """One preload module bound to the server it serves."""

    def __init__(self, server: Any, name: str, argv: list[str]) -> None:
        self.server = server
        self.name = name
        self.argv = list(argv)
        self.module = import_preload(name)
        self.takes_argv = _is_click_command(getattr(self.module, "dask_setup", None))

    async def start(self) -> None:
        setup = getattr(self.module, "dask_setup", None)
        if setup is None:
            return
        logger.info("running preload %s: dask_setup", self.name)
        if self.takes_argv:
            context = setup.make_context("dask_setup", list(self.argv), allow_extra_args=False)
            result = setup.callback(self.server, *context.args, **context.params)
        else:
            result = setup(self.server)
        if inspect.isawaitable(result):
            await result

    async def teardown(self) -> None:
        teardown = getattr(self.module, "dask_teardown", None)
        if teardown is None:
            return
        logger.info("running preload %s: dask_teardown", self.name)
        result = teardown(self.server)
        if inspect.isawaitable(result):
            await result


class Preloads:
    """The preloads of one server: imported when made, set up in order,
    torn down in reverse order."""

    def __init__(self, server: Any, names: Any, argv: Any) -> None:
        names = _as_list(names, "preload")
        argv = _as_list(argv, "preload_argv")
        self.items = [Preload(server, name, argv) for name in names]
        takers = [p.name for p in self.items if p.takes_argv]
        if argv and not takers:
            raise ValueError(f"preload arguments {argv} given, but no preload has a "
                             "click-command dask_setup to take them")
        if len(takers) > 1:
            raise ValueError(f"more than one preload takes arguments (click commands): {takers}")
        self._started = False

    def __len__(self) -> int:
        return len(self.items)

    async def start(self) -> None:
        self._started = True
        for p in self.items:
            try:
                await p.start()
            except Exception:
                logger.exception("preload %s failed in dask_setup", p.name)

    async def teardown(self) -> None:
        if not self._started:
            return
        self._started = False
        for p in reversed(self.items):
            try:
                await p.teardown()
            except Exception:
                logger.exception("preload %s failed in dask_teardown", p.name)
