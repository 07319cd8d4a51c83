"""Published datasets: ``publish_dataset``, ``get_dataset``,
``list_datasets``, ``unpublish_dataset`` and the ``client.datasets``
mapping, as methods of ``shoal.Client`` (the scheduler side is
``shoal/scheduler/datasets.py``).

    client.publish_dataset(results=futures)        # or publish_dataset(x, name="results")
    other_client.get_dataset("results")            # the same futures, in another client
    client.datasets["results"]                     # the same, as a mapping

A dataset is any picklable object; futures inside it (a list of futures, a
persisted dask collection) keep their results on the workers for as long as
the dataset is published, even after the publishing client has gone.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


_NO_DEFAULT = object()


class DatasetMethods(MixinBase):
    def publish_dataset(self, *args: Any, name: str | None = None, override: bool = False,
                        asynchronous: bool | None = None, **kwargs: Any) -> Any:
        """Publish objects under names, for any client of this scheduler:
        ``publish_dataset(name1=x, name2=y)`` or ``publish_dataset(x, name="n")``.
        A name that exists already raises ``KeyError`` unless ``override``."""
        if name is not None:
            if not args:
                raise ValueError("with name=, give the data too: publish_dataset(x, name='ds')")
            kwargs[name] = args[0] if len(args) == 1 else args
        elif args:
            raise ValueError("give each dataset a name: publish_dataset(ds=x), or "
                             "publish_dataset(x, name='ds')")
        if not kwargs:
            raise ValueError("publish_dataset() needs at least one dataset")
        for label in kwargs:
            if not isinstance(label, str) or not label:
                raise TypeError(f"dataset names are non-empty strings, got {label!r}")
        from shoal.protocol.serialize import dumps_with_references

        datasets = {}
        for label, value in kwargs.items():
            payload, keys = dumps_with_references(value)
            datasets[label] = {"data": payload, "keys": sorted(keys)}
        return self._sync(self._publish, datasets, override, asynchronous=asynchronous)

    async def _publish(self, datasets: dict[str, Any], override: bool) -> None:
        await self._request("publish_dataset", datasets=datasets, override=override)

    def get_dataset(self, name: str, default: Any = _NO_DEFAULT,
                    asynchronous: bool | None = None) -> Any:
        """The dataset published under ``name`` (its futures now belong to
        this client too); ``default`` if there is none, else ``KeyError``."""
        return self._sync(self._get_dataset, name, default, asynchronous=asynchronous)

    async def _get_dataset(self, name: str, default: Any) -> Any:
        from shoal.client.core import current_client
        from shoal.protocol.serialize import loads

        try:
            payload = await self._request("get_dataset", name=name)
        except KeyError:
            if default is _NO_DEFAULT:
                raise
            return default
        token = current_client.set(self)  # the futures inside bind to this client
        try:
            return loads(payload)
        finally:
            current_client.reset(token)

    def list_datasets(self, asynchronous: bool | None = None) -> Any:
        """The names of the published datasets, sorted."""
        return self._sync(self._request, "list_datasets", asynchronous=asynchronous)

    def unpublish_dataset(self, name: str, asynchronous: bool | None = None) -> Any:
        """Remove a dataset; its results go once no future holds them.
        ``KeyError`` if there is no such dataset."""
        return self._sync(self._request, "unpublish_dataset", name=name, asynchronous=asynchronous)

    @property
    def datasets(self) -> Datasets:
        """The published datasets as a mapping: ``client.datasets["x"] = data``,
        ``client.datasets["x"]``, ``del client.datasets["x"]``, ``list(...)``."""
        return Datasets(self)


class Datasets(MutableMapping):  # type: ignore[type-arg]
    """``client.datasets``: the scheduler's published datasets as a mapping."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getitem__(self, name: str) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._client.publish_dataset(value, name=name)

    def __delitem__(self, name: str) -> None:
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        if self._client.asynchronous:
            raise TypeError("iterating client.datasets needs a synchronous client; "
                            "use await client.list_datasets()")
        return iter(self._client.list_datasets())

    def __len__(self) -> int:
        if self._client.asynchronous:
            raise TypeError("len(client.datasets) needs a synchronous client; "
                            "use len(await client.list_datasets())")
        return len(self._client.list_datasets())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._client.list_datasets()

    def __repr__(self) -> str:
        return f"<Datasets of {self._client!r}>"
