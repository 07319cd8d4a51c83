"""Other ways to run work on the cluster: dask collections (``compute``,
``persist``, ``get``, ``futures_of``; the work itself is in
``collections.py``), with dask.distributed's signatures, and
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
                workers: Any = None, allow_other_workers: bool | None = False,
                resources: Any = None, retries: Any = 0, priority: Any = 0,
                fifo_timeout: Any = "60s", actors: Any = None, traverse: bool = True,
                **kwargs: Any) -> Any:
        """Start computing dask collections: one ``Future`` per collection (its
        final value), other arguments returned as they are; the values
        themselves with ``sync=True``.

        ``workers``, ``allow_other_workers``, ``resources``, ``retries``,
        ``priority`` and ``actors`` restrict the graph's tasks as in dask
        (a value for every task, or a dict from keys or collections to
        values: see ``graph_options.py``); ``dask.annotate`` annotations are
        honoured too.  ``fifo_timeout`` is checked but has no effect: shoal
        orders work by priority, then submission order.  ``traverse=True``
        looks for collections inside lists, tuples, sets and dicts."""
        from shoal.client import collections as coll

        futures = coll.compute(self, collections, optimize_graph, workers, allow_other_workers,
                               resources, retries, priority, fifo_timeout, actors, traverse,
                               **kwargs)
        return self.gather(futures) if sync else futures

    def persist(self, collections: Any, optimize_graph: bool = True, workers: Any = None,
                allow_other_workers: bool | None = None, resources: Any = None,
                retries: Any = None, priority: Any = 0, fifo_timeout: Any = "60s",
                actors: Any = None, **kwargs: Any) -> Any:
        """Start computing dask collections; return the same collections,
        backed by futures of their results (which stay on the workers).  The
        keywords are ``compute``'s."""
        from shoal.client import collections as coll

        return coll.persist(self, collections, optimize_graph, workers, allow_other_workers,
                            resources, retries, priority, fifo_timeout, actors, **kwargs)

    def get(self, dsk: Any, keys: Any, workers: Any = None,
            allow_other_workers: bool | None = None, resources: Any = None, sync: bool = True,
            asynchronous: bool | None = None, direct: bool | None = None, retries: Any = None,
            priority: Any = 0, fifo_timeout: Any = "60s", actors: Any = None,
            **kwargs: Any) -> Any:
        """The dask scheduler interface (``dask.compute`` uses it while this
        client is the default): compute ``keys`` (nested lists) of the graph
        ``dsk``; their values, or futures with ``sync=False``.  The keywords
        are ``compute``'s."""
        from shoal.client import collections as coll

        if kwargs:
            raise TypeError(f"get() got unexpected keyword arguments {sorted(kwargs)}")
        return coll.get(self, dsk, keys, workers, allow_other_workers, resources, sync,
                        asynchronous, direct, retries, priority, fifo_timeout, actors)

    def futures_of(self, futures: Any) -> Any:
        """The futures inside ``futures``: a persisted dask collection, or
        lists, tuples, sets and dicts of futures and collections, nested."""
        from shoal.client.structure import futures_of

        return futures_of(futures, client=self)

    def normalize_collection(self, collection: Any) -> Any:
        """The collection with its tasks replaced by this client's futures of
        the same keys where it has them (so they are not computed again), and
        what only those tasks needed left out; the collection itself if there
        are none."""
        from shoal.client import collections as coll

        return coll.normalize_collection(self, collection)

    def get_executor(self, **kwargs: Any) -> ClientExecutor:
        """A ``concurrent.futures.Executor`` running calls on this client's
        cluster; ``kwargs`` (``workers``, ``resources``, ``retries``,
        ``priority``, ``allow_other_workers``, ``pure``, ``fifo_timeout``)
        apply to every call.  See ``shoal.client.executor``."""
        from shoal.client.executor import ClientExecutor

        return ClientExecutor(self, **kwargs)
