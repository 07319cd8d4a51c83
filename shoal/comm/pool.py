"""Request/response over long-lived connections, one per peer.

Used for the data plane (a worker fetching from a peer, a client scattering
to or gathering from a worker).  A request is a message with an ``id``; the
answer is the message coming back with the same ``id``.  Connections are made
on first use (with the handshake) and reused; a connection that breaks fails
every request waiting on it with ``CommClosedError``.

``request_from_thread`` lets a thread other than the loop's send a request on
an open socket connection itself and wait on a ``concurrent.futures.Future``:
one thread hand-off less each way than going through the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
from collections.abc import Callable
from typing import Any

from shoal.comm.core import Comm, connect_and_greet
from shoal.errors import CommClosedError

logger = logging.getLogger("shoal.comm")


class PeerConnection:
    def __init__(self, comm: Comm, info: dict[str, Any] | None = None) -> None:
        self.comm = comm
        self.info = info or {}  # what the peer said about itself in its Welcome
        # answers awaited on the loop (asyncio) or by other threads (concurrent)
        self.pending: dict[int, asyncio.Future[Any] | concurrent.futures.Future[Any]] = {}
        # messages that answer no request (a worker pushing results), if wanted
        self.on_unsolicited: Callable[[Any], None] | None = None
        comm.start(self._on_messages, self._on_close)

    def _on_messages(self, msgs: list[Any]) -> None:
        for msg in msgs:
            fut = self.pending.pop(getattr(msg, "id", -1), None)
            if fut is None:
                if self.on_unsolicited is not None:
                    self.on_unsolicited(msg)
                    continue
                logger.warning("unexpected %s from %s", type(msg).__name__, self.comm.peer_address)
            elif not fut.done():
                _settle(fut, msg, None)

    def _on_close(self, comm: Comm, exc: BaseException | None) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                _settle(fut, None, CommClosedError(f"connection to {comm.peer_address} was lost"))

    def request_from_thread(self, msg: Any) -> concurrent.futures.Future[Any]:
        """Send ``msg`` from this (non-loop) thread; the answer resolves the
        returned future on the loop thread.  Needs ``comm.threadsafe_send``."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.pending[msg.id] = fut
        try:
            if self.comm.closed:  # _on_close may have run before we registered
                raise CommClosedError(f"connection to {self.comm.peer_address} is closed")
            self.comm.send([msg])
        except CommClosedError as e:
            self.pending.pop(msg.id, None)
            if not fut.done():
                _settle(fut, None, CommClosedError(f"connection to {self.comm.peer_address} was lost: {e}"))
        return fut


def _settle(fut: asyncio.Future[Any] | concurrent.futures.Future[Any], value: Any,
            error: BaseException | None) -> None:
    """Resolve ``fut`` unless another thread just did (a request made from a
    thread races the loop's close handler on a connection that breaks)."""
    try:
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        pass


class ConnectionPool:
    """Connections to peers by address, made on first use.  At most ``limit``
    stay open (dask's ``connection_limit``): past it, the connection used
    longest ago that is not waiting on an answer is closed."""

    def __init__(self, role: str, name: str = "", connect_timeout: float | None = None,
                 limit: int = 512, security: Any = None) -> None:
        if limit < 1:
            raise ValueError(f"a connection limit must be at least 1, got {limit}")
        self.role = role
        self.name = name
        self.connect_timeout = connect_timeout
        self.limit = limit
        self.security = security  # proves us to the peers (shoal.Security), or None
        self._conns: dict[str, PeerConnection] = {}
        self._connecting: dict[str, asyncio.Future[PeerConnection]] = {}
        self._ids = itertools.count(1)
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def next_id(self) -> int:
        return next(self._ids)

    def open_connection(self, address: str) -> PeerConnection | None:
        """The open connection to ``address`` if there is one whose comm may be
        written from any thread; else None (use ``request`` on the loop)."""
        conn = self._conns.get(address)
        if conn is None or conn.comm.closed or not conn.comm.threadsafe_send:
            return None
        return conn

    async def connection(self, address: str) -> PeerConnection:
        conn = self._conns.get(address)
        if conn is not None and not conn.comm.closed:
            if len(self._conns) >= self.limit:  # keep the order of use: the oldest goes first
                del self._conns[address]
                self._conns[address] = conn
            return conn
        if self.closed:
            raise CommClosedError("connection pool is closed")
        fut = self._connecting.get(address)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._connecting[address] = fut
            try:
                comm, welcome = await connect_and_greet(address, self.role, self.name,
                                                        self.connect_timeout,
                                                        security=self.security)
                if self.is_closed():  # closed while we connected: nobody would close this one
                    comm.abort(None)
                    raise CommClosedError("connection pool is closed")
                conn = PeerConnection(comm, welcome.info)
                self._conns.pop(address, None)
                self._conns[address] = conn
                self._evict(keep=address)
                fut.set_result(conn)
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # mark retrieved: the caller re-raises below
                raise
            finally:
                self._connecting.pop(address, None)
            return conn
        return await asyncio.shield(fut)

    def _evict(self, keep: str) -> None:
        """Close idle connections other than ``keep``, oldest use first, down
        to the limit (busy ones stay: the limit is exceeded while they are)."""
        excess = len(self._conns) - self.limit
        if excess <= 0:
            return
        for address, conn in list(self._conns.items()):
            if excess <= 0:
                break
            if address != keep and (not conn.pending or conn.comm.closed):
                del self._conns[address]
                conn.comm.abort(None)
                excess -= 1

    async def request(self, address: str, msg: Any, timeout: float | None = None) -> Any:
        """Send ``msg`` (which has a fresh ``id``) and wait for the answer."""
        conn = await self.connection(address)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.pending[msg.id] = fut
        try:
            conn.comm.send([msg])
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer from {address} within {timeout} s") from None
        finally:
            conn.pending.pop(msg.id, None)

    def drop(self, address: str, reason: str) -> None:
        """Close the connection to ``address`` if there is one: requests
        waiting on it fail with ``CommClosedError`` (the peer left; it may
        never answer, e.g. a stopped process or a partitioned host)."""
        conn = self._conns.pop(address, None)
        if conn is not None:
            conn.comm.abort(CommClosedError(reason))

    def close(self) -> None:
        self.closed = True
        for conn in self._conns.values():
            conn.comm.abort(None)
        self._conns.clear()
