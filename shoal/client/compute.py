"""Other ways to run work on the cluster: dask collections (``compute``,
``persist``, ``get``; the work itself is in ``collections.py``) and
``get_executor`` (``executor.py``), as methods of ``shoal.Client``.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from typing import Any

    from shoal.client.executor import ClientExecutor



class Computing(MixinBase):
    def compute(self, collections: Any, sync: bool = False, optimize_graph: bool = True,
                retries: int | None = None, priority: int = 0, **kwargs: Any) -> Any:
        """Start computing dask collections; one ``Future`` per collection (the
        final, finalized value), or the values with ``sync=True``."""
        from shoal.client import collections as coll

        futures = coll.compute(self, collections, optimize_graph, retries or 0, priority)
        return self.gather(futures) if sync else futures

    def persist(self, collections: Any, optimize_graph: bool = True, retries: int | None = None,
                priority: int = 0, **kwargs: Any) -> Any:
        """Start computing dask collections; return the same collections, backed
        by futures of their results (which stay on the workers)."""
        from shoal.client import collections as coll

        return coll.persist(self, collections, optimize_graph, retries or 0, priority)

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """The dask scheduler interface: ``dask.compute`` uses it while this
        client is the default."""
        from shoal.client import collections as coll

        return coll.get(self, dsk, keys, **kwargs)

    def get_executor(self, **kwargs: Any) -> ClientExecutor:
        """A ``concurrent.futures.Executor`` running calls on this client's
        cluster; ``kwargs`` (``workers``, ``resources``, ``retries``,
        ``priority``, ``allow_other_workers``, ``pure``, ``fifo_timeout``)
        apply to every call.  See ``shoal.client.executor``."""
        from shoal.client.executor import ClientExecutor

        return ClientExecutor(self, **kwargs)
