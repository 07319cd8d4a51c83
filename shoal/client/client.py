"""``shoal.Client``: the class users import, made of one module per
responsibility.

    ClientCore        core.py            connection, references, messages, gather/scatter
    Submitting        submitting.py      submit, map
    Cancelling        cancelling.py      cancel, retry
    Introspection     introspection.py   who_has, has_what, scheduler_info, story, metadata, ...
    Diagnostics       diagnostics.py     get_task_stream, profile, call_stack, logs, versions, ...
    ClusterControl    control.py         run_on_scheduler, wait_for_workers, ...
    Computing         compute.py         compute, persist, get (dask collections)
    DatasetMethods    datasets.py        publish_dataset, get_dataset, client.datasets, ...
    Events            events.py          log_event, get_events, subscribe_topic, forward_logging, ...
    PluginMethods     plugins.py         register_plugin, upload_file, ...
    ActiveMemory      amm.py             client.amm (the Active Memory Manager)
    Reprs             reprs.py           repr, _repr_html_ (notebooks), dashboard_link

The mixins use the core (through ``self``); the core imports none of them.

Importing this module is light (no asyncio, msgspec, cloudpickle): a
``Client()`` that starts a local cluster launches the cluster's fork server
first (``shoal.cluster.prestart``) and only then imports what a running client
needs (``core.load_runtime``), so that the two processes' imports overlap on
two cores.  Tools see the real class: ``help(shoal.Client)``,
``inspect.signature`` and IDE completion show every keyword and method.
"""

from __future__ import annotations

from shoal.client import core
from shoal.client.amm import ActiveMemory
from shoal.client.cancelling import Cancelling
from shoal.client.compute import Computing
from shoal.client.control import ClusterControl
from shoal.client.core import ClientCore, load_runtime
from shoal.client.datasets import DatasetMethods
from shoal.client.diagnostics import Diagnostics
from shoal.client.events import Events
from shoal.client.introspection import Introspection
from shoal.client.plugins import PluginMethods
from shoal.client.reprs import Reprs
from shoal.client.submitting import Submitting

TYPE_CHECKING = False  # typing is not imported: this module runs before anything heavy
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from typing import Any

class Client(Submitting, Cancelling, ActiveMemory, Computing, ClusterControl, DatasetMethods,
             Diagnostics, Events, Introspection, PluginMethods, Reprs, ClientCore):
    """Connect to a shoal cluster, or start a local one.

    ``Client()`` starts a ``LocalCluster`` on this machine (keyword arguments
    such as ``n_workers``, ``threads_per_worker``, ``processes`` and
    ``memory_limit`` go to it); ``Client("tcp://host:port")`` connects to a
    running scheduler; ``Client(cluster)`` to a cluster object;
    ``Client(scheduler_file="scheduler.json")`` to the scheduler a file names.

    Parameters (dask.distributed's, in its order):

    address: a scheduler address, a cluster object, or None for a new local cluster.
    loop: must be None: shoal runs its own event loop thread.
    timeout: seconds to connect (default: setting ``comm.timeouts.connect``).
    set_as_default: make this the default client (for ``Future``,
        primitives, ``dask.compute``).
    scheduler_file: a JSON file with the scheduler's ``"address"``, as
        ``shoal scheduler --scheduler-file`` writes; waited for up to ``timeout``.
    security: a ``shoal.Security`` (the cluster's token, TLS certificates),
        or True for ``Security.temporary()``; default: the cluster's own
        (a ``LocalCluster`` object, or one made in this process at that
        address), else from the settings (``SHOAL_TOKEN``...).  See
        docs/security.md.
    asynchronous: methods return awaitables; use ``await Client(...)`` or
        ``async with Client(..., asynchronous=True)``.
    name: a name for this client in the scheduler's logs.
    heartbeat_interval: seconds between heartbeats to the scheduler
        (default: setting ``client.heartbeat-interval``).
    serializers, deserializers: None, or lists of dask's serializer families
        that include "pickle" (shoal has one format: pickle protocol 5 with
        out-of-band buffers, cloudpickle for functions).
    extensions: must be empty: shoal has no client extensions.
    direct_to_workers: accepted; shoal always moves data straight between
        the client and the workers.
    connection_limit: at most this many connections to workers stay open.
    **kwargs: with no address, for ``LocalCluster``.
    """

    def __init__(
        self,
        address: Any = None,
        loop: Any = None,
        timeout: float | str | None = None,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: float | str | None = None,
        serializers: list[str] | None = None,
        deserializers: list[str] | None = None,
        extensions: Mapping[str, Any] | None = None,
        direct_to_workers: bool | None = None,
        connection_limit: int = 512,
        **kwargs: Any,
    ) -> None:
        from shoal.cluster.prestart import prestart

        # a local cluster's fork server first, then the client's own imports:
        # the two processes' imports overlap (see the module docstring)
        if address is None and scheduler_file is None:
            self._prestarted = prestart(None, kwargs)
        try:
            load_runtime()
            from shoal.units import parse_timedelta

            _refuse_unsupported(loop, serializers, deserializers, extensions)
            from shoal.security import coerce_security

            security = coerce_security(security, "Client")
            if security is not None and address is None and scheduler_file is None:
                kwargs["security"] = security  # for the LocalCluster it starts, as dask
            seconds = None if timeout is None else parse_timedelta(timeout)
            if scheduler_file is not None:
                if address is not None:
                    raise ValueError("give an address or a scheduler_file, not both")
                from shoal.deploy.scheduler_file import read_scheduler_file

                address = read_scheduler_file(scheduler_file, seconds)
            heartbeat = None if heartbeat_interval is None else parse_timedelta(heartbeat_interval)
            if not isinstance(connection_limit, int) or connection_limit < 1:
                raise ValueError(f"connection_limit must be a positive int, got {connection_limit!r}")
        except BaseException:
            if self._prestarted is not None:
                self._prestarted.discard()
            raise
        self.direct_to_workers = direct_to_workers
        self.scheduler_file = scheduler_file
        self.security = security
        self.connection_args: dict[str, Any] = {}
        self.extensions: dict[str, Any] = dict(extensions or {})
        self.preloads: list[Any] = []
        self.generation = 1  # dask counts reconnections; a shoal client connects once
        self._init_core(
            address, timeout=seconds, set_as_default=set_as_default, asynchronous=asynchronous,
            name=name, heartbeat_interval=heartbeat, connection_limit=connection_limit,
            cluster_kwargs=kwargs,
        )

    # ------------------------------------------------------------------ dask's lifecycle helpers

    def start(self, **kwargs: Any) -> Any:
        """Start the client if it is not running yet: a synchronous client
        starts when made, so this returns at once; an asynchronous one returns
        the awaitable that connects it (as ``await client`` does)."""
        if kwargs:
            raise TypeError(f"start() got unexpected keyword arguments {sorted(kwargs)}")
        if self.asynchronous:
            return self._start()
        return None

    def sync(self, func: Callable[..., Awaitable[Any] | Any], *args: Any,
             asynchronous: bool | None = None, callback_timeout: float | str | None = None,
             **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` (a coroutine function, or a function)
        on the client's event loop: a synchronous client waits for the result
        (at most ``callback_timeout``), an asynchronous one returns the awaitable."""
        from shoal.units import parse_timedelta

        async def call() -> Any:
            result = func(*args, **kwargs)
            if hasattr(result, "__await__"):
                result = await result
            return result

        limit = None if callback_timeout is None else parse_timedelta(callback_timeout)
        return self._sync(call, asynchronous=asynchronous, callback_timeout=limit)

    @property
    def scheduler(self) -> Any:
        """The scheduler's requests over this client's connection:
        ``await client.scheduler.who_has()``; ``client.scheduler.address``."""
        from shoal.comm.rpc import SchedulerProxy

        return SchedulerProxy(self)

    def write_scheduler_file(self, scheduler_file: str) -> None:
        """Write the scheduler's information (``scheduler_info()``) to a JSON
        file another client can connect with (``Client(scheduler_file=...)``)."""
        import json

        if self.scheduler_file:
            raise ValueError("Scheduler file already set")
        self.scheduler_file = scheduler_file
        with open(scheduler_file, "w") as f:
            json.dump(self.scheduler_info(), f, indent=2)

    @classmethod
    def current(cls, allow_global: bool = True) -> Client:
        """The client made current with ``as_current()`` in this context, else
        (``allow_global``) the default client; ``ValueError`` if there is none."""
        c = core.current_client.get()
        if c is not None and c.status not in ("closing", "closed"):
            return c  # type: ignore[no-any-return]
        if allow_global:
            client: Client = core.default_client()
            return client
        raise ValueError("No clients found: no client was made current with as_current()")

    def as_current(self) -> _AsCurrent:
        """``with client.as_current():`` makes this client ``Client.current()``
        (and the one futures and primitives use) inside the block."""
        return _AsCurrent(self)


class _AsCurrent:
    """The context manager of ``Client.as_current()``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._token: Any = None

    def __enter__(self) -> Client:
        self._token = core.current_client.set(self.client)
        return self.client

    def __exit__(self, *exc: Any) -> None:
        core.current_client.reset(self._token)


def _refuse_unsupported(loop: Any, serializers: Any, deserializers: Any, extensions: Any) -> None:
    """dask's keywords that shoal cannot honour: a clear error, not a silent ignore."""
    if loop is not None:
        raise NotImplementedError(
            "Client(loop=...): shoal runs its clients on its own event loop thread; "
            "for asyncio code use Client(..., asynchronous=True) inside your loop")
    for label, families in (("serializers", serializers), ("deserializers", deserializers)):
        if families is not None and "pickle" not in list(families):
            raise NotImplementedError(
                f"Client({label}={families!r}): shoal serializes with pickle (protocol 5, "
                "out-of-band buffers) and cloudpickle only; include 'pickle' or leave it None")
    if extensions:
        raise NotImplementedError(f"Client(extensions=...): shoal has no client extensions "
                                  f"(got {sorted(extensions)})")
