"""What the cluster holds and does: ``who_has``, ``has_what``, ``nthreads``,
``processing``, ``scheduler_info``, ``story``, ``nbytes``, ``get_metadata``
and ``set_metadata``... as methods of ``shoal.Client``.

Each method asks the scheduler (``shoal/scheduler/queries.py``) and returns
its answer; ``asynchronous=True`` gives an awaitable, as in dask.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from typing import Any



def keys_of(futures: Any) -> list[str] | None:
    """The keys of the futures (or keys) in ``futures``, nested in lists,
    tuples, sets and dict values; None for "all"."""
    if futures is None:
        return None
    from shoal.client.future import Future

    keys: dict[str, None] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, Future):
            keys[obj.key] = None
        elif isinstance(obj, str):
            keys[obj] = None
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                walk(v)
        else:
            raise TypeError(f"expected futures or keys, got {type(obj).__name__}: {obj!r}")

    walk(futures)
    return list(keys)


class _NoDefault:
    """``get_metadata(keys)`` without a default: a missing key raises."""

    def __repr__(self) -> str:
        return "no_default"


no_default: Any = _NoDefault()


def metadata_path(keys: Any, label: str) -> list[Any]:
    """A metadata key, or a list or tuple of keys (a path into nested dicts)."""
    path = list(keys) if isinstance(keys, (list, tuple)) else [keys]
    if not path:
        raise ValueError(f"{label}: give a key or a non-empty list of keys")
    for k in path:
        if not isinstance(k, (str, int, float)) or isinstance(k, bool):
            raise TypeError(f"{label}: metadata keys are strings or numbers, got {k!r}")
    return path


def worker_list(workers: Any) -> list[str] | None:
    """``workers=`` as a list of addresses or names, or None for "all"."""
    if workers is None:
        return None
    if isinstance(workers, str):
        return [workers]
    return list(workers)


class Introspection(MixinBase):
    def who_has(self, futures: Any = None, asynchronous: bool | None = None,
                callback_timeout: float | None = None) -> Any:
        """``{key: [worker addresses]}``: where the data of these futures (or of
        every key in memory) is."""
        return self._sync(self._request, "who_has", keys=keys_of(futures),
                          asynchronous=asynchronous, callback_timeout=callback_timeout)

    def has_what(self, workers: Any = None, asynchronous: bool | None = None,
                 callback_timeout: float | None = None) -> Any:
        """``{worker address: [keys]}``: what each worker (or these ones) holds."""
        return self._sync(self._request, "has_what", workers=worker_list(workers),
                          asynchronous=asynchronous, callback_timeout=callback_timeout)

    def nthreads(self, workers: Any = None, asynchronous: bool | None = None,
                 callback_timeout: float | None = None) -> Any:
        """``{worker address: threads}``."""
        return self._sync(self._request, "nthreads", workers=worker_list(workers),
                          asynchronous=asynchronous, callback_timeout=callback_timeout)

    ncores = nthreads

    def processing(self, workers: Any = None, asynchronous: bool | None = None,
                   callback_timeout: float | None = None) -> Any:
        """``{worker address: [keys]}``: the tasks each worker is running or about to."""
        return self._sync(self._request, "processing", workers=worker_list(workers),
                          asynchronous=asynchronous, callback_timeout=callback_timeout)

    def scheduler_info(self, n_workers: int = 5, asynchronous: bool | None = None,
                       callback_timeout: float | None = None) -> Any:
        """The scheduler and its workers, in dask's layout: ``{"type",
        "id", "address", "started", "workers": {address: info}, ...}``.
        ``n_workers``: describe at most this many workers (``-1``: all), as
        in dask; the counts cover every worker."""
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < -1:
            raise ValueError(f"n_workers must be -1 (all) or a count, got {n_workers!r}")
        return self._sync(self._request, "scheduler_info", n_workers=n_workers,
                          asynchronous=asynchronous, callback_timeout=callback_timeout)

    def task_states(self, futures: Any = None, asynchronous: bool | None = None) -> Any:
        """``{key: scheduler state}`` (a shoal extension, for debugging)."""
        return self._sync(self._request, "task_states", keys=keys_of(futures),
                          asynchronous=asynchronous)

    def story(self, *keys_or_stimuli: Any, on_error: str = "raise",
              asynchronous: bool | None = None) -> Any:
        """The transitions of these keys (or futures) on the scheduler, oldest
        first: ``(key, start, finish, stimulus, time)``.  ``on_error``
        ("raise" or "ignore") is accepted for dask's signature: the
        scheduler's story cannot fail part-way."""
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore', got {on_error!r}")
        keys = keys_of(list(keys_or_stimuli)) or []
        return self._sync(self._request, "story", keys=keys, asynchronous=asynchronous)

    def nbytes(self, keys: Any = None, summary: bool = True,
               asynchronous: bool | None = None) -> Any:
        """Bytes of each key's value in memory (as ``sizeof`` measures it):
        ``{key: bytes}``, or with ``summary`` ``{key prefix: bytes}`` summed
        over the keys of one function.  ``keys``: keys or futures (default:
        every key in memory); an unknown one raises ``KeyError``."""
        return self._sync(self._request, "nbytes", keys=keys_of(keys), summary=bool(summary),
                          asynchronous=asynchronous)

    def set_metadata(self, key: Any, value: Any, asynchronous: bool | None = None) -> Any:
        """Keep ``value`` (msgpack-able data: dicts, lists, strings, numbers,
        bools, None, bytes) on the scheduler under ``key``; a list (or tuple)
        of keys is a path into nested dicts, made as needed:
        ``set_metadata(["x", "y"], 1)`` then ``get_metadata("x") == {"y": 1}``.
        An entry whose key is a task's key goes when that task is forgotten."""
        import msgspec

        path = metadata_path(key, "set_metadata")
        try:
            msgspec.msgpack.encode(value)
        except (TypeError, msgspec.EncodeError) as e:
            raise TypeError(f"set_metadata: the value must be msgpack-able data "
                            f"(dicts, lists, str, numbers, bool, None, bytes): {e}") from None
        return self._sync(self._request, "set_metadata", keys=path, value=value,
                          asynchronous=asynchronous)

    def get_metadata(self, keys: Any, default: Any = no_default,
                     asynchronous: bool | None = None) -> Any:
        """The metadata under ``keys`` (a key, or a list or tuple of keys: a
        path into nested dicts); ``default`` if it is not there, or
        ``KeyError`` without one."""
        return self._sync(self._get_metadata, metadata_path(keys, "get_metadata"), default,
                          asynchronous=asynchronous)

    async def _get_metadata(self, path: list[Any], default: Any) -> Any:
        found, value = await self._request("get_metadata", keys=path)
        if found:
            return value
        if default is no_default:
            raise KeyError(path[0] if len(path) == 1 else path)
        return default
