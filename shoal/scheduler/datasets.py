"""Published datasets: named objects kept by the scheduler for any client
(``client.publish_dataset(df=x)``, ``client.get_dataset("df")``).

A scheduler extension (see ``server.py``).  A dataset is a pickled object
(a ``Payload`` the scheduler never opens) and the keys of the futures inside
it.  Those keys are wanted on the datasets' behalf by a pseudo-client, so
their results stay on the workers while the dataset is published, whoever
published it and whether or not that client is still connected.  A client
getting a dataset is registered as wanting its keys before it receives the
object, so the results cannot go away in between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.protocol.serialize import Payload
from shoal.scheduler.records import ClientRecord

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

#: the pseudo-client that wants the keys of published datasets
HOLDER = "published-datasets"


class Datasets:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        self.datasets: dict[str, tuple[Payload, list[str]]] = {}
        self.holds: dict[str, int] = {}  # key -> datasets holding it
        state = server.state
        if HOLDER not in state.clients:
            state.clients[HOLDER] = ClientRecord(HOLDER)
            state.pseudo_clients.add(HOLDER)

    async def rpc_publish_dataset(self, client_id: str, datasets: dict[str, dict[str, Any]],
                                  override: bool = False) -> list[str]:
        """Publish every ``{name: {"data": Payload, "keys": [...]}}`` at once,
        or none: an existing name without ``override``, or a key the
        scheduler does not know, refuses the whole call."""
        state = self.server.state
        for name, entry in datasets.items():
            if not isinstance(entry.get("data"), Payload):
                raise TypeError(f"dataset {name!r} came without its data")
            if name in self.datasets and not override:
                raise KeyError(f"Dataset {name!r} already exists (use override=True to replace it)")
            unknown = [k for k in entry.get("keys", []) if k not in state.tasks]
            if unknown:
                raise ValueError(f"dataset {name!r} holds futures the scheduler does not know "
                                 f"(released?): {unknown[:5]}")
        for name, entry in datasets.items():
            old = self.datasets.pop(name, None)
            self._hold(list(entry.get("keys", [])))
            self.datasets[name] = (entry["data"], list(entry.get("keys", [])))
            if old is not None:
                self._unhold(old[1])
        return sorted(datasets)

    async def rpc_get_dataset(self, client_id: str, name: str) -> Payload:
        try:
            data, keys = self.datasets[name]
        except KeyError:
            raise KeyError(f"Dataset {name!r} not found") from None
        state = self.server.state
        c = state.clients.get(client_id)
        if c is not None and keys:
            state.want_keys(c, keys, report=True)
        return data

    async def rpc_list_datasets(self, client_id: str) -> list[str]:
        return sorted(self.datasets)

    async def rpc_unpublish_dataset(self, client_id: str, name: str) -> None:
        try:
            _, keys = self.datasets.pop(name)
        except KeyError:
            raise KeyError(f"Dataset {name!r} not found") from None
        self._unhold(keys)

    def cluster_restarted(self) -> None:
        """``client.restart`` forgot every task: datasets holding futures are
        gone with their results; those of plain data stay."""
        self.holds.clear()
        self.datasets = {name: entry for name, entry in self.datasets.items() if not entry[1]}

    def _hold(self, keys: list[str]) -> None:
        state = self.server.state
        new = []
        for key in keys:
            n = self.holds.get(key, 0)
            self.holds[key] = n + 1
            if n == 0:
                new.append(key)
        if new:
            state.want_keys(state.clients[HOLDER], new, report=False)

    def _unhold(self, keys: list[str]) -> None:
        state = self.server.state
        gone = []
        for key in keys:
            n = self.holds.get(key, 0) - 1
            if n > 0:
                self.holds[key] = n
            else:
                self.holds.pop(key, None)
                gone.append(key)
        if gone:
            state.release_keys(state.clients[HOLDER], gone)
