"""``rpc(address)``: ask a scheduler things directly, without a Client, as
dask.distributed's ``rpc`` does: ``await rpc(addr).who_has()``; and
``connect(addr)``, a raw connection.

Each ``rpc`` opens one connection (as a client, handshake and all) on first
use; every attribute is a coroutine function sending that request and
returning the answer.  ``client.scheduler`` is the same interface over a
client's own connection.  An error the scheduler answers with is raised.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.comm.core import Comm, connect_and_greet
from shoal.errors import CommClosedError, SchedulerError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, loads


def raise_error_answer(method: str, value: Any) -> None:
    """Raise what a ``Response(ok=False)`` carries: a pickled exception, or text."""
    if isinstance(value, Payload):
        try:
            value = loads(value)
        except Exception:
            value = SchedulerError(f"{method} failed (its error could not be read)")
    if isinstance(value, BaseException):
        raise value
    raise SchedulerError(f"{method} failed: {value}")


class rpc:
    """Requests to the scheduler at ``address``; ``async with rpc(addr) as r:``."""

    def __init__(self, address: str, timeout: float | None = None, *,
                 connection_args: dict[str, Any] | None = None, security: Any = None) -> None:
        """``security`` (a ``shoal.Security``, or dask's ``connection_args``
        from ``security.get_connection_args("client")``): how to prove
        ourselves; default: the settings'."""
        self.address = address
        self.timeout = timeout
        self.security = _security_from(security, connection_args or {}, address)
        self._comm: Comm | None = None
        self._ids = itertools.count(1)

    async def _connect(self) -> Comm:
        if self._comm is None or self._comm.closed:
            self._comm, _ = await connect_and_greet(self.address, "client", "rpc", self.timeout,
                                                    security=self.security)
        return self._comm

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(**args: Any) -> Any:
            args.pop("comm", None)  # dask's handlers take a comm argument; shoal's do not
            comm = await self._connect()
            rid = next(self._ids)
            comm.send([m.Request(rid, method, args)])
            while True:  # this connection carries only our requests, answered in order
                for msg in await comm.recv(self.timeout):
                    if type(msg) is m.Response and msg.id == rid:
                        if msg.ok:
                            return msg.value
                        raise_error_answer(method, msg.value)

        call.__name__ = method
        return call

    async def close_rpc(self) -> None:
        if self._comm is not None:
            await self._comm.close()
            self._comm = None

    async def __aenter__(self) -> rpc:
        await self._connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_rpc()

    def __repr__(self) -> str:
        return f"<rpc to {self.address!r}>"


async def connect(addr: str, timeout: float | str | None = None, deserialize: bool = True,
                  handshake_overrides: dict[str, Any] | None = None, **connection_args: Any) -> Comm:
    """A connection to a shoal server at ``addr``, handshake done, as dask's
    ``connect``: ``comm.send([messages])``, ``await comm.recv()``.  It
    connects as a client, proving ``security`` (or what dask's
    ``**security.get_connection_args("client")`` carries; default: the
    settings').  ``deserialize=False`` and ``handshake_overrides`` have no
    meaning for shoal's comms: asking for them raises rather than being
    ignored."""
    from shoal.units import parse_timedelta

    if not deserialize:
        raise NotImplementedError("connect(deserialize=False): shoal's comms always decode messages")
    if handshake_overrides:
        raise NotImplementedError("connect(handshake_overrides=...): shoal's handshake has no options")
    security = _security_from(connection_args.pop("security", None), connection_args, addr)
    seconds = None if timeout is None else parse_timedelta(timeout)
    comm, _ = await connect_and_greet(addr, "client", "connect", seconds, security=security)
    return comm


def _security_from(security: Any, connection_args: dict[str, Any], address: str) -> Any:
    """A ``Security`` from shoal's ``security=`` or dask's connection
    arguments (``ssl_context``, ``require_encryption``, ``extra_conn_args``,
    and the ``security`` shoal adds to them); by default that of a
    LocalCluster of this process at ``address``, else the settings'."""
    from shoal.security import Security, security_for_address

    args = dict(connection_args)
    security = security or args.pop("security", None)
    unknown = sorted(set(args) - {"ssl_context", "require_encryption", "extra_conn_args"})
    if unknown or args.get("extra_conn_args"):
        raise NotImplementedError(f"shoal's connections take no arguments {unknown or ['extra_conn_args']}")
    if args.get("ssl_context") is not None and security is None:
        raise NotImplementedError("connection_args with an ssl_context alone: pass the Security "
                                  "(security=..., or **security.get_connection_args('client'))")
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a shoal.Security, got {type(security).__name__}")
    return security if security is not None else security_for_address(address)


class SchedulerProxy:
    """``client.scheduler``: the scheduler's requests over the client's own
    connection (``await client.scheduler.who_has()`` in an asynchronous
    client; ``client.sync(client.scheduler.who_has)`` in a synchronous one)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @property
    def address(self) -> str:
        return str(self._client.scheduler_address)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(**args: Any) -> Any:
            args.pop("comm", None)
            if self._client.status != "running":
                raise CommClosedError(f"the client is {self._client.status}")
            return await self._client._request(method, **args)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<scheduler {self.address!r} (requests over {self._client!r})>"
