"""``shoal.Client``, the name users import, kept light on purpose.

``from shoal import Client`` gives this class, which imports nothing heavy.
Calling it starts a local cluster's fork server first when the call will
need one (``Client()`` with no address, see ``shoal.cluster.prestart``), and
only then loads the implementation, ``shoal.client.core.Client`` (a subclass
of this one), so that the two processes' imports overlap.  Every client is
an instance of the implementation, hence of this class too:
``isinstance(client, shoal.Client)`` holds, and ``shoal.Client.submit`` and
the like are the implementation's.
"""

from __future__ import annotations

import threading
import weakref

TYPE_CHECKING = False  # typing is not imported: this module runs before anything heavy
if TYPE_CHECKING:
    from typing import Any

_subclasses: dict[type, type] = {}
_lock = threading.Lock()


def _implementation() -> type:
    from shoal.client.core import Client as impl

    return impl


def _with_implementation(cls: type, impl: type) -> type:
    """A user's subclass of ``shoal.Client``, with the implementation mixed in."""
    with _lock:
        combined = _subclasses.get(cls)
        if combined is None:
            combined = type(cls.__name__, (cls, impl), {"__module__": cls.__module__,
                                                         "__qualname__": cls.__qualname__})
            _subclasses[cls] = combined
        return combined


class _ClientType(type):
    def __getattr__(cls, name: str) -> Any:
        # only for shoal.Client itself: the implementation's class attributes
        if cls is not Client or name.startswith("__"):
            raise AttributeError(name)
        return getattr(_implementation(), name)


class Client(metaclass=_ClientType):
    """Connect to a shoal cluster, or start a local one.

    ``Client()`` starts a ``LocalCluster`` (keyword arguments such as
    ``n_workers``, ``threads_per_worker``, ``processes`` and ``memory_limit``
    go to it); ``Client("tcp://host:port")`` connects to a running scheduler;
    ``Client(cluster)`` connects to a cluster object.
    """

    _prestarted: Any = None

    def __new__(cls, address: Any = None, *args: Any, **kwargs: Any) -> Any:
        from shoal.cluster.prestart import prestart

        prestarted = prestart(address, kwargs)
        try:
            impl = _implementation()
            if cls is Client:
                cls = impl
            elif not issubclass(cls, impl):
                cls = _with_implementation(cls, impl)
            self = object.__new__(cls)
        except BaseException:
            if prestarted is not None:
                prestarted.discard()
            raise
        if prestarted is not None:
            # __init__ hands it to the LocalCluster; should __init__ not run
            # (a wrong argument), it goes with this object
            weakref.finalize(self, prestarted.discard)
        self._prestarted = prestarted
        return self
