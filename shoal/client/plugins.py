"""Plugins and uploaded code: ``register_plugin``,
``register_worker_callbacks``, ``unregister_worker_plugin``,
``unregister_scheduler_plugin``, ``upload_file``, as methods of
``shoal.Client`` (the plugin classes are in ``shoal/plugins.py``; the
scheduler and worker sides in ``scheduler/plugins.py`` and
``worker/plugins.py``).
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any



def plugin_name(plugin: Any) -> str:
    """The plugin's ``name``, or a fresh one (as dask names unnamed plugins)."""
    name = getattr(plugin, "name", None)
    if name:
        return str(name)
    import uuid

    return f"{type(plugin).__name__}-{uuid.uuid4()}"


class PluginMethods(MixinBase):
    def register_plugin(self, plugin: Any, name: str | None = None,
                        asynchronous: bool | None = None) -> Any:
        """Register a ``WorkerPlugin`` (set up on every worker, present and
        future), a ``SchedulerPlugin`` (started in the scheduler) or a
        ``NannyPlugin`` (set up where each worker starts; see
        ``shoal.plugins``).  ``name`` defaults to the plugin's ``name``;
        registering a name again replaces that plugin, unless the plugin is
        ``idempotent``, in which case nothing happens.  A plugin that fails to
        set up on a worker raises its error here (it stays registered)."""
        from shoal.plugins import NannyPlugin, SchedulerPlugin, WorkerPlugin
        from shoal.protocol.serialize import dumps

        if isinstance(plugin, type):
            raise TypeError("register_plugin() needs an instance of a plugin, not a class: "
                            f"{plugin.__name__}()")
        name = plugin_name(plugin) if name is None else name
        idempotent = bool(getattr(plugin, "idempotent", False))
        if isinstance(plugin, SchedulerPlugin):
            return self._sync(self._request, "register_scheduler_plugin", name=name,
                              plugin=dumps(plugin), idempotent=idempotent, asynchronous=asynchronous)
        if isinstance(plugin, NannyPlugin):
            kind, restart = "nanny", bool(getattr(plugin, "restart", False))
        elif isinstance(plugin, WorkerPlugin):
            kind, restart = "worker", False
        else:
            raise TypeError(
                f"{type(plugin).__name__} is not a plugin: subclass shoal.WorkerPlugin, "
                "shoal.SchedulerPlugin or shoal.NannyPlugin (duck-typed plugins are refused, "
                "as in dask)")
        return self._sync(self._request, "register_worker_plugin", name=name, plugin=dumps(plugin),
                          idempotent=idempotent, kind=kind, restart=restart,
                          asynchronous=asynchronous)

    def register_worker_callbacks(self, setup: Callable[..., Any] | None = None,
                                  asynchronous: bool | None = None) -> Any:
        """Run ``setup()`` (or ``setup(dask_worker=worker)``) on every worker
        now and on every worker that joins later."""
        from shoal.plugins import WorkerCallback

        if setup is None or not callable(setup):
            raise TypeError(f"register_worker_callbacks needs a function, got {setup!r}")
        return self.register_plugin(WorkerCallback(setup), asynchronous=asynchronous)

    def unregister_worker_plugin(self, name: str, nanny: bool | None = None,
                                 asynchronous: bool | None = None) -> Any:
        """Remove a worker plugin (``nanny=True``: a nanny plugin); each worker
        runs its ``teardown``.  ``ValueError`` if there is none of that name."""
        return self._sync(self._request, "unregister_worker_plugin", name=name,
                          kind="nanny" if nanny else "worker", asynchronous=asynchronous)

    def unregister_scheduler_plugin(self, name: str, asynchronous: bool | None = None) -> Any:
        """Remove (and close) a scheduler plugin; ``ValueError`` if there is
        none of that name."""
        return self._sync(self._request, "unregister_scheduler_plugin", name=name,
                          asynchronous=asynchronous)

    def upload_file(self, filename: str, load: bool = True,
                    asynchronous: bool | None = None) -> Any:
        """Copy a local ``.py``, ``.zip``, ``.egg`` or ``.pyz`` file to every worker,
        present and future, where it becomes importable (and is imported, with
        ``load``); uploading a file of the same name again replaces it.
        Where it went: ``get_worker().local_directory``."""
        from shoal.plugins import UploadFile

        return self.register_plugin(UploadFile(filename, load=load), asynchronous=asynchronous)
