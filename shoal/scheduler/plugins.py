"""Plugins on the scheduler: keeping worker and nanny plugins for the
workers (present and future), and running scheduler plugins.

A scheduler extension (see ``server.py``).  Worker and nanny plugins stay
pickled here (``Payload``s the scheduler never opens): running workers get
them with the request ``plugin_add``, joining workers in the ``Welcome``.  A
scheduler plugin is user code the user asked to run here (like
``run_on_scheduler``): it is unpickled, started, and told what happens
(workers and clients coming and going, tasks submitted, transitions,
restarts, the scheduler closing).

Transitions reach scheduler plugins after each batch the scheduler handled,
read from the state machine's log: the state machine stays pure and pays
nothing while no plugin watches.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from shoal.errors import WorkerRequestError
from shoal.extensions import call
from shoal.protocol.serialize import Payload, loads

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class SchedulerPlugins:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        # kind ("worker" | "nanny") -> name -> pickled plugin
        self.for_workers: dict[str, dict[str, Payload]] = {"nanny": {}, "worker": {}}
        self.restart_on_register: dict[str, bool] = {}
        self.plugins: dict[str, Any] = {}  # scheduler plugins by name
        self._seen_transitions = 0

    # -- worker and nanny plugins ----------------------------------------------------

    def worker_welcome(self, address: str) -> dict[str, Any]:
        """What a joining worker sets up before it runs anything."""
        return {"plugins": {kind: dict(p) for kind, p in self.for_workers.items() if p}}

    async def rpc_register_worker_plugin(self, client_id: str, name: str, plugin: Payload,
                                         idempotent: bool = False, kind: str = "worker",
                                         restart: bool = False) -> dict[str, str]:
        """Keep ``plugin`` for every worker that joins from now on and set it
        up on the running ones; their first error is raised to the client
        (the plugin stays registered, as in dask)."""
        if kind not in self.for_workers:
            raise ValueError(f"unknown plugin kind {kind!r}")
        if not isinstance(plugin, Payload):
            raise TypeError("a plugin must come pickled")
        if idempotent and name in self.for_workers[kind]:
            return {}
        self.for_workers[kind][name] = plugin
        workers = None
        if restart and kind == "nanny" and self.server.worker_comms:
            # new processes set the plugin up before they join; workers no
            # supervisor would start again set it up in place
            workers = await self.server.cluster_control.restart_supervised(
                self.server.cluster_control.move_timeout)
            if not workers:
                return {a: "OK" for a in self.server.worker_comms}
        answers = await self.server.ask_workers("plugin_add", workers, name=name, plugin=plugin,
                                                kind=kind)
        return _raise_first_error(answers, f"{kind} plugin {name!r}")

    async def rpc_unregister_worker_plugin(self, client_id: str, name: str,
                                           kind: str = "worker") -> dict[str, str]:
        if self.for_workers.get(kind, {}).pop(name, None) is None:
            raise ValueError(f"The {kind} plugin {name} does not exist")
        answers = await self.server.ask_workers("plugin_remove", name=name, kind=kind)
        return _raise_first_error(answers, f"removing {kind} plugin {name!r}")

    async def rpc_worker_plugin_names(self, client_id: str) -> dict[str, list[str]]:
        return {kind: sorted(p) for kind, p in self.for_workers.items()}

    # -- scheduler plugins ---------------------------------------------------------------

    async def rpc_register_scheduler_plugin(self, client_id: str, name: str, plugin: Payload,
                                            idempotent: bool = False) -> None:
        if idempotent and name in self.plugins:
            return
        await self.add_plugin(loads(plugin), name)

    async def add_plugin(self, plugin: Any, name: str) -> None:
        """Start ``plugin`` here (replacing, closed first, one of that name)."""
        old = self.plugins.pop(name, None)
        if old is not None:
            await self._close(name, old)
        start = getattr(plugin, "start", None)
        if start is not None:
            await call(start, self.server)
        self.plugins[name] = plugin
        if self._watching("transition"):
            self._seen_transitions = self.server.state.transition_counter

    async def rpc_unregister_scheduler_plugin(self, client_id: str, name: str) -> None:
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"Could not find plugin {name!r} among the current scheduler plugins")
        await self._close(name, plugin)

    async def _close(self, name: str, plugin: Any) -> None:
        close = getattr(plugin, "close", None)
        if close is not None:
            try:
                await call(close)
            except Exception:
                logger.exception("scheduler plugin %r failed to close", name)

    async def closing(self) -> None:
        """The scheduler is closing: ``before_close``, then ``close``, of each."""
        for name, plugin in list(self.plugins.items()):
            hook = getattr(plugin, "before_close", None)
            if hook is not None:
                try:
                    await call(hook)
                except Exception:
                    logger.exception("scheduler plugin %r failed in before_close", name)
        for name, plugin in list(self.plugins.items()):
            await self._close(name, plugin)
        self.plugins.clear()

    # -- what scheduler plugins are told -------------------------------------------------

    def _watching(self, hook: str) -> list[Any]:
        from shoal.plugins import SchedulerPlugin

        base = getattr(SchedulerPlugin, hook, None)
        return [p for p in self.plugins.values()
                if getattr(type(p), hook, None) is not None and getattr(type(p), hook) is not base]

    def _tell(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for plugin in self._watching(hook):
            try:
                result = getattr(plugin, hook)(*args, **kwargs)
                if inspect.isawaitable(result):
                    self.server._spawn(result)
            except Exception:
                logger.exception("scheduler plugin %s failed in %s", type(plugin).__name__, hook)

    def worker_joined(self, address: str) -> None:
        self._tell("add_worker", scheduler=self.server, worker=address)

    def worker_left(self, address: str) -> None:
        self._tell("remove_worker", scheduler=self.server, worker=address, stimulus_id="worker-left")

    def client_joined(self, client_id: str) -> None:
        self._tell("add_client", scheduler=self.server, client=client_id)

    def client_left(self, client_id: str) -> None:
        self._tell("remove_client", scheduler=self.server, client=client_id)

    def tasks_submitted(self, client_id: str, keys: set[str]) -> None:
        if self.plugins:
            self._tell("update_graph", self.server, client=client_id, keys=keys,
                       tasks=sorted(keys))

    def cluster_restarted(self) -> None:
        self._tell("restart", self.server)

    def event_logged(self, topic: str, msg: Any) -> None:
        self._tell("log_event", topic, msg)

    def batch_handled(self) -> None:
        """After each batch: the transitions since the last one, to the
        plugins that watch them (none: nothing to do)."""
        if not self.plugins:
            return
        state = self.server.state
        new = state.transition_counter - self._seen_transitions
        self._seen_transitions = state.transition_counter
        if new <= 0:
            return
        watchers = self._watching("transition")
        if not watchers:
            return
        log = state.log
        entries = [log[i] for i in range(max(0, len(log) - new), len(log))]
        for key, start, finish, stimulus, _ in entries:
            for plugin in watchers:
                try:
                    plugin.transition(key, str(start), str(finish), stimulus_id=stimulus)
                except Exception:
                    logger.exception("scheduler plugin %s failed in transition",
                                     type(plugin).__name__)


def _raise_first_error(answers: dict[str, Any], what: str) -> dict[str, str]:
    for address, answer in answers.items():
        if isinstance(answer, WorkerRequestError):
            raise answer
        if isinstance(answer, BaseException):
            raise WorkerRequestError(f"worker {address} failed {what}: {answer}") from answer
    return {address: "OK" for address in answers}
