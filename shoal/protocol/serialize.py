"""Turning user objects into bytes and back.  No sockets here.

Rules:
1. User data becomes a :class:`Payload`: one pickle stream (protocol 5) plus
   the out-of-band buffers pickle hands us (numpy arrays, bytearrays...).  The
   buffers are never joined into one bytes object; the comm layer writes each
   as its own frame and the receiving side rebuilds the object over the frames
   it read, so a 200 MB array is not copied on the way.
2. Plain ``pickle`` first (fast, C); ``cloudpickle`` only when plain pickle
   cannot do it (lambdas, closures, classes defined in ``__main__``).
   Functions always go through cloudpickle, once per function (cached).
3. Futures inside task arguments become dependencies: while
   :func:`dumps_task_args` runs, a ``Future`` reduces to a reference to its
   key, which the worker resolves to the dependency's value at unpickle time
   (see :func:`task_data_context`).  This finds futures wherever they are
   nested, inside lists, dicts, tuples or the user's own objects.
4. The scheduler never calls anything here except to forward ``Payload``
   objects unopened.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import traceback as traceback_module
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import cloudpickle

from shoal.errors import RemoteException, RemoteTraceback, SerializationError

__all__ = [
    "Payload",
    "dumps",
    "dumps_exception",
    "dumps_function",
    "dumps_task_args",
    "loads",
    "loads_exception",
    "task_data_context",
]

#: Buffers smaller than this stay inside the pickle stream: a frame of its own
#: costs more than copying a few kilobytes.
OOB_MIN_BYTES = 4096

_PROTOCOL = 5


class Payload:
    """A serialized object: a pickle stream plus its out-of-band buffers."""

    __slots__ = ("buffers", "data")

    def __init__(self, data: bytes | bytearray | memoryview, buffers: Sequence[Any] | None = None):
        self.data = data
        # most values have no out-of-band buffer: the empty tuple is shared
        # and untracked by the collector, where an empty list per value is not
        self.buffers: Sequence[Any] = buffers if buffers else ()

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(memoryview(b).nbytes for b in self.buffers)

    def __repr__(self) -> str:
        return f"<Payload {len(self.data)} bytes + {len(self.buffers)} buffers>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Payload):
            return NotImplemented
        return bytes(self.data) == bytes(other.data) and [bytes(b) for b in self.buffers] == [
            bytes(b) for b in other.buffers
        ]

    __hash__ = None  # type: ignore[assignment]


def _oob_collector(buffers: list[Any]) -> Any:
    def callback(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < OOB_MIN_BYTES:
            return True  # keep it in-band
        buffers.append(buf.raw())
        return False

    return callback


def dumps(obj: object) -> Payload:
    """Serialize ``obj``; raise :class:`SerializationError` saying what failed."""
    buffers: list[Any] = []
    try:
        data = pickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=_oob_collector(buffers))
        if b"__main__" in data:
            # a class or function of the user's script or notebook, pickled by
            # reference: the workers do not have it, so send it by value
            raise pickle.PicklingError("refers to __main__")
    except Exception:
        buffers = []
        try:
            data = cloudpickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=_oob_collector(buffers))
        except Exception as e:
            raise SerializationError(
                f"Could not serialize object of type {type(obj).__name__}: {e!r}"
            ) from e
    return Payload(data, buffers)


def loads(payload: Payload) -> Any:
    """Rebuild an object from a :class:`Payload`."""
    try:
        if payload.buffers:
            return pickle.loads(payload.data, buffers=payload.buffers)
        return pickle.loads(payload.data)
    except SerializationError:
        raise
    except Exception as e:
        raise SerializationError(f"Could not deserialize object: {e!r}") from e


# ---------------------------------------------------------------------------
# functions
# ---------------------------------------------------------------------------

_FUNCTION_CACHE: dict[Any, tuple[bytes, bytes]] = {}
_FUNCTION_CACHE_MAX = 512
_function_lock = threading.Lock()


def dumps_function(func: Any) -> tuple[bytes, bytes]:
    """``(function_id, blob)`` for ``func``; pickled once per function object.

    The id is a hash of the blob, so the same function sent by two clients is
    stored once by the scheduler and unpickled once per worker.
    """
    try:
        cached = _FUNCTION_CACHE.get(func)
    except TypeError:  # unhashable callable
        cached = None
    if cached is not None:
        return cached
    try:
        blob = cloudpickle.dumps(func, protocol=_PROTOCOL)
    except Exception as e:
        raise SerializationError(f"Could not serialize function {func!r}: {e!r}") from e
    result = (hashlib.blake2b(blob, digest_size=16).digest(), blob)
    try:
        with _function_lock:
            if len(_FUNCTION_CACHE) >= _FUNCTION_CACHE_MAX:
                _FUNCTION_CACHE.pop(next(iter(_FUNCTION_CACHE)))
            _FUNCTION_CACHE[func] = result
    except TypeError:
        pass
    return result


def loads_function(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception as e:
        raise SerializationError(f"Could not deserialize function: {e!r}") from e


# ---------------------------------------------------------------------------
# task arguments and their dependencies
# ---------------------------------------------------------------------------

_local = threading.local()


def collecting_dependencies() -> set[str] | None:
    """The set a ``Future.__reduce__`` should add its key to, when task
    arguments are being pickled in this thread; else ``None``."""
    return getattr(_local, "deps", None)


def collecting_references() -> set[str] | None:
    """The set a ``Future.__reduce__`` should add its key to while an object
    that keeps its futures (a published dataset) is pickled; else ``None``."""
    return getattr(_local, "refs", None)


def dumps_with_references(obj: object) -> tuple[Payload, set[str]]:
    """Serialize ``obj`` with the futures inside it (which stay futures when
    it is unpickled); return the payload and those futures' keys."""
    refs: set[str] = set()
    previous = getattr(_local, "refs", None)
    _local.refs = refs
    try:
        payload = dumps(obj)
    finally:
        _local.refs = previous
    return payload, refs


def dumps_task_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Payload, set[str]]:
    """Serialize ``(args, kwargs)``; return the payload and the keys of the
    futures found anywhere inside them."""
    deps: set[str] = set()
    previous = getattr(_local, "deps", None)
    _local.deps = deps
    try:
        payload = dumps((args, dict(kwargs) if kwargs else None))
    finally:
        _local.deps = previous
    return payload, deps


def resolve_dependency(key: str) -> Any:
    """Called by pickle on the worker in place of a future: the dependency's value."""
    data = getattr(_local, "task_data", None)
    if data is None:
        raise SerializationError(
            f"A reference to task {key!r} was unpickled outside of a task; "
            "futures become values only as arguments of submit/map"
        )
    try:
        return data[key]
    except KeyError:
        raise SerializationError(f"Dependency {key!r} is not in this worker's memory") from None


class _DependencyRef:
    """Pickles like a future for ``key``: a dependency resolved on the worker."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        deps = collecting_dependencies()
        if deps is not None:
            deps.add(self.key)
        return (resolve_dependency, (self.key,))


def dependency_ref(key: str) -> Any:
    """A placeholder for the value of ``key`` inside task arguments."""
    return _DependencyRef(key)


@contextmanager
def task_data_context(data: Mapping[str, Any]) -> Iterator[None]:
    """Within this block, dependency references unpickle to values from ``data``."""
    previous = getattr(_local, "task_data", None)
    _local.task_data = data
    try:
        yield
    finally:
        _local.task_data = previous


def loads_task_args(payload: Payload, data: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    with task_data_context(data):
        args, kwargs = loads(payload)
    return args, kwargs or {}


# ---------------------------------------------------------------------------
# exceptions
# ---------------------------------------------------------------------------


def _strip_frames(tb: Any, skip_modules: tuple[str, ...]) -> Any:
    """Drop leading traceback frames that belong to shoal's own machinery."""
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith(skip_modules):
        tb = tb.tb_next
    return tb


def dumps_exception(exc: BaseException) -> tuple[Payload, Payload, str]:
    """``(exception, traceback, text)``, each safe to send.

    An exception that does not pickle is replaced by a :class:`RemoteException`
    carrying its type, message and traceback text.
    """
    tb = _strip_frames(exc.__traceback__, ("shoal.",))
    text = "".join(traceback_module.format_exception(type(exc), exc, tb))
    try:
        exc_payload = dumps(exc)
        # an exception that pickles but does not unpickle here will not
        # unpickle on the client either
        loads(exc_payload)
    except Exception:
        exc_payload = dumps(RemoteException(type(exc).__name__, str(exc), text))
    try:
        from tblib import Traceback

        tb_payload = dumps(Traceback(tb).as_dict() if tb is not None else None)
    except Exception:
        tb_payload = dumps(None)
    return exc_payload, tb_payload, text


def loads_exception(exc_payload: Payload, tb_payload: Payload | None, text: str) -> BaseException:
    """Rebuild a remote exception with its traceback attached."""
    try:
        exc = loads(exc_payload)
        if not isinstance(exc, BaseException):
            raise TypeError(f"not an exception: {type(exc).__name__}")
    except Exception as e:
        first_line = text.strip().splitlines()[-1] if text.strip() else repr(e)
        type_name, _, message = first_line.partition(": ")
        exc = RemoteException(type_name.rpartition(".")[2], message, text)
    tb = loads_traceback(tb_payload)
    if tb is not None:
        exc = exc.with_traceback(tb)
    if exc.__cause__ is None and text:
        exc.__cause__ = RemoteTraceback(text)
    return exc  # type: ignore[no-any-return]


def loads_traceback(tb_payload: Payload | None) -> Any:
    if tb_payload is None:
        return None
    try:
        tb_dict = loads(tb_payload)
        if tb_dict is None:
            return None
        from tblib import Traceback

        return Traceback.from_dict(tb_dict).as_traceback()
    except Exception:
        return None
