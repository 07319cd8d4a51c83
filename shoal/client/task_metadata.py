"""``get_task_metadata()``: what the scheduler knows about the tasks a block
of code submitted and saw finish, as dask.distributed's context manager:

    with get_task_metadata() as tasks:
        client.gather(client.map(inc, range(10)))
    tasks.state      # {key: "memory" | "erred"}
    tasks.metadata   # {key: {"nbytes": ..., "type": ..., "workers": [...]}}

Built on a scheduler plugin (``TaskMetadataCollector``) registered for the
block: it notes the keys submitted meanwhile and, as each reaches memory or
errs, its final state and metadata.  dask's metadata is whatever plugins
wrote into a task's ``metadata`` dict (usually empty); shoal reports the
result's size, type name and where it is held.
"""

from __future__ import annotations

import uuid
from typing import Any

from shoal.plugins import SchedulerPlugin


class TaskMetadataCollector(SchedulerPlugin):
    """The scheduler plugin behind ``get_task_metadata``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: set[str] = set()
        self.metadata: dict[str, dict[str, Any]] = {}
        self.state: dict[str, str] = {}
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def update_graph(self, scheduler: Any, *, client: str, keys: set[str], **kwargs: Any) -> None:
        self.keys.update(keys)

    def transition(self, key: str, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        if finish not in ("memory", "erred") or key not in self.keys:
            return
        self.keys.discard(key)
        self.state[key] = finish
        ts = self.scheduler.state.tasks.get(key)
        if ts is not None:
            self.metadata[key] = {"nbytes": ts.nbytes, "type": ts.type_name,
                                  "workers": sorted(w.address for w in ts.who_has)}
        else:
            self.metadata[key] = {}


def _collected(name: str, dask_scheduler: Any) -> tuple[dict[str, Any], dict[str, str]]:
    plugin = dask_scheduler.plugins.plugins[name]
    return dict(plugin.metadata), dict(plugin.state)


class get_task_metadata:
    """Collect the metadata and final state of the tasks submitted and
    finished inside the block (``.metadata``, ``.state`` afterwards).
    ``async with`` works with an asynchronous client."""

    def __init__(self) -> None:
        self.name = f"task-metadata-{uuid.uuid4().hex}"
        self.keys: set[str] = set()
        self.metadata: dict[str, Any] | None = None
        self.state: dict[str, str] | None = None

    @staticmethod
    def _client() -> Any:
        from shoal.worker.context import get_client

        return get_client()

    def __enter__(self) -> get_task_metadata:
        self._client().register_plugin(TaskMetadataCollector(self.name))
        return self

    def __exit__(self, *exc: Any) -> None:
        client = self._client()
        self.metadata, self.state = client.run_on_scheduler(_collected, self.name)
        client.unregister_scheduler_plugin(self.name)

    async def __aenter__(self) -> get_task_metadata:
        await self._client().register_plugin(TaskMetadataCollector(self.name))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        client = self._client()
        self.metadata, self.state = await client.run_on_scheduler(_collected, self.name)
        await client.unregister_scheduler_plugin(self.name)
