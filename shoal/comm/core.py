"""What every transport offers, and the handshake that opens every connection.

A ``Comm`` moves batches of messages (lists of protocol structs) both ways.
Received batches go to the ``on_messages`` callback given to ``start()``, on
the event loop thread, with no asyncio Task per message; before ``start()``,
``await recv()`` reads them one at a time (used by handshakes and short
request/response exchanges).

Rules:
1. ``send()`` never blocks and never awaits; it raises ``CommClosedError``
   once the comm is closed.  Producers of bulk data ``await drain()``.
2. Every wait has a timeout.  A connection that cannot be made within the
   connect timeout raises ``OSError`` naming the address.
2b. A network connection is a Comm only once its handshake is done
   (``shoal/comm/auth.py``): the peer proved the cluster's token, or
   neither side has one.  A refused token raises ``AuthenticationError``.
3. A peer that sends garbage gets its connection closed and a log line;
   nothing else is affected.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from shoal.comm.addresses import parse_address
from shoal.comm.codec import MessageCodec
from shoal.errors import CommClosedError, RemoteProtocolError
from shoal.protocol.messages import PROTOCOL_VERSION, Hello, Rejected, Welcome

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shoal.security import Security

logger = logging.getLogger("shoal.comm")

MessageHandler = Callable[[list[Any]], None]
CloseHandler = Callable[["Comm", BaseException | None], None]



_physical_memory: int | None = None


def frame_limits() -> tuple[int, int]:
    """(largest frame, largest message) a peer may send once its handshake is
    done: settings ``comm.max-frame-size`` and ``comm.max-message-size``
    (null: this machine's memory, beyond which nothing can be received)."""
    global _physical_memory
    from shoal import config

    if _physical_memory is None:
        try:
            _physical_memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            _physical_memory = 1 << 40
    out = []
    for key in ("comm.max-frame-size", "comm.max-message-size"):
        value = config.get(key)
        out.append(_physical_memory if value is None else config.size(key))
    return out[0], out[1]


def send_queue_limits() -> tuple[int, float]:
    """(bytes, seconds): a connection with more than these bytes waiting to
    be sent, whose peer has taken next to none of them (under 1 MiB) for
    this long, is closed
    (settings ``comm.send-queue.limit`` and ``comm.send-queue.stall-timeout``).
    A peer that stops reading cannot make the sender hold its messages
    without bound; a slow one that keeps reading is never cut."""
    from shoal import config

    stall = config.duration("comm.send-queue.stall-timeout")
    return config.size("comm.send-queue.limit"), float("inf") if stall is None else stall


class StallClock:
    """Whether a peer keeps reading what waits for it (pure: times are
    given).  It counts as reading when it takes ``min_bytes`` (or all that
    waited) within ``timeout`` of the last time it did; a trickle, a byte or
    a TCP window now and then, does not keep a full queue alive."""

    __slots__ = ("mark", "min_bytes", "taken", "timeout")

    def __init__(self, timeout: float, min_bytes: int = 1024 * 1024) -> None:
        self.timeout = timeout
        self.min_bytes = min_bytes
        self.mark = 0.0  # when the peer last counted as reading
        self.taken = 0  # bytes it took since then

    def waiting_from(self, now: float) -> None:
        """Bytes started to wait for the peer (the queue was empty)."""
        self.mark = now
        self.taken = 0

    def took(self, nbytes: int, drained: bool, now: float) -> None:
        """The peer took ``nbytes`` more; ``drained``: nothing waits now."""
        self.taken += nbytes
        if self.taken >= self.min_bytes or drained:
            self.mark = now
            self.taken = 0

    def stalled(self, now: float) -> bool:
        return now - self.mark > self.timeout


def default_close_timeout() -> float:
    """Seconds a closing connection has to send what waits for it: the
    setting ``comm.timeouts.close``."""
    from shoal import config

    value = config.duration("comm.timeouts.close")
    return 1.0 if value is None else value


def default_connect_timeout() -> float:
    """Seconds a connect (handshake included) may take unless told otherwise:
    the setting ``comm.timeouts.connect``."""
    from shoal import config

    value = config.duration("comm.timeouts.connect")
    return 10.0 if value is None else value


class Comm(abc.ABC):
    """Base of the transports: message delivery and the receive queue."""

    local_address: str = ""
    peer_address: str = ""
    #: True when ``send`` may be called from any thread, not only the loop's
    threadsafe_send: bool = False
    #: whether a message received here keeps the loop polling for a moment
    #: (shoal/comm/spin.py); a worker turns it off for its scheduler connection
    keeps_loop_polling: bool = True
    #: the role the peer proved in the handshake ("client", "worker", "peer";
    #: "" on the in-process transport, which has no handshake)
    peer_role: str = ""

    def __init__(self) -> None:
        self.codec = MessageCodec()
        self.closed = False
        self._close_handled = False
        self.close_reason: BaseException | None = None
        self._on_messages: MessageHandler | None = None
        self._on_close: CloseHandler | None = None
        self._pending: deque[list[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.name = ""  # set by the owner for log lines

    # -- receiving ----------------------------------------------------------------

    def start(self, on_messages: MessageHandler, on_close: CloseHandler | None = None) -> None:
        """Deliver every batch (queued ones first) to ``on_messages``."""
        self._on_messages = on_messages
        self._on_close = on_close
        while self._pending and not self.closed:
            self.handle(on_messages, self._pending.popleft())
        if self.closed and on_close is not None:
            on_close(self, self.close_reason)

    async def recv(self, timeout: float | None = None) -> list[Any]:
        """The next batch; only before ``start()``."""
        while not self._pending:
            if self.closed:
                raise CommClosedError(f"connection to {self.peer_address} closed") from self.close_reason
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"no message from {self.peer_address} within {timeout} s"
                ) from None
            finally:
                self._waiter = None
        return self._pending.popleft()

    def _deliver_frames(self, frames: list[Any]) -> None:
        try:
            msgs = self.codec.decode(frames)
        except RemoteProtocolError as e:
            logger.error("closing connection from %s: %s", self.peer_address or "?", e)
            self.abort(e)
            return
        handler = self._on_messages
        if handler is None:
            self._pending.append(msgs)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
            return
        self.handle(handler, msgs)

    def handle(self, handler: MessageHandler, msgs: list[Any]) -> None:
        """``handler(msgs)``; a handler that fails closes this connection
        only (a peer's bad message must not reach the event loop)."""
        try:
            handler(msgs)
        except RemoteProtocolError as e:
            logger.error("closing connection from %s: %s", self.peer_address or "?", e)
            self.abort(e)
        except Exception as e:
            logger.exception("error handling messages from %s; closing that connection", self.peer_address)
            self.abort(e)

    def _closed(self, exc: BaseException | None) -> None:
        """Called by the transport when the connection is gone (acts once)."""
        if self._close_handled:
            return
        self._close_handled = True
        self.closed = True
        self.close_reason = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._on_close is not None:
            try:
                self._on_close(self, exc)
            except Exception:
                logger.exception("error in close handler of %s", self.peer_address)

    # -- sending (the transports implement these) ----------------------------------

    @abc.abstractmethod
    def send(self, msgs: list[Any]) -> None:
        """Queue ``msgs`` for the peer, in order."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until the queue of unsent bytes is below the high-water mark."""

    @abc.abstractmethod
    async def flushed(self) -> None:
        """Wait until everything sent so far has been handed to the OS."""

    @abc.abstractmethod
    def abort(self, exc: BaseException | None = None) -> None:
        """Close now, dropping what is unsent."""

    async def close(self, timeout: float | None = None) -> None:
        """Flush what is queued (bounded by ``timeout``, by default the
        setting ``comm.timeouts.close``), then close."""
        if not self.closed:
            try:
                await asyncio.wait_for(self.flushed(),
                                       default_close_timeout() if timeout is None else timeout)
            except (asyncio.TimeoutError, OSError):
                pass
        self.abort(None)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.local_address} -> {self.peer_address} {state}>"


class Listener(abc.ABC):
    """Accepts connections; hands each new ``Comm`` to ``on_connection``."""

    address: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start accepting connections."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop accepting connections."""


#: the TLS role of each handshake role (whose certificate a connection shows)
TLS_ROLE = {"client": "client", "worker": "worker", "peer": "worker"}


def _check_encryption(scheme: str, address: str, security: Security | None) -> None:
    if scheme == "tcp" and security is not None and security.require_encryption:
        raise RuntimeError(f"encryption is required (Security(require_encryption=True) or setting "
                           f"comm.require-encryption): refusing plain {address}; use tls://")


def _tls_context(scheme: str, address: str, security: Security | None, role: str,
                 server_side: bool) -> Any:
    if scheme != "tls":
        return None
    ctx = None if security is None else security.ssl_context(role, server_side)
    if ctx is None:
        raise ValueError(f"{address} is a TLS address, but no TLS certificates were given for "
                         f"the {role} role: Security(tls_ca_file=..., tls_{role}_cert=..., "
                         f"tls_{role}_key=...) or Security.temporary()")
    return ctx


async def connect(address: str, timeout: float | None = None, retry: bool = False, *,
                  security: Security | None = None, role: str = "client",
                  server_hostname: str | None = None) -> Comm:
    """Open a connection to ``address`` and run the handshake as ``role``
    (proving ``security``'s token, over TLS for a ``tls://`` address)."""
    scheme, loc = parse_address(address)
    timeout = default_connect_timeout() if timeout is None else timeout
    if scheme == "inproc":
        from shoal.comm.inproc import inproc_connect

        return await inproc_connect(loc, timeout, retry)
    _check_encryption(scheme, address, security)
    ctx = _tls_context(scheme, address, security, TLS_ROLE[role], server_side=False)
    from shoal.comm.tcp import tcp_connect

    return await tcp_connect(loc, timeout, retry, role=role,
                             token=None if security is None else security.token, ssl_context=ctx,
                             server_hostname=server_hostname)


def listen(address: str, on_connection: Callable[[Comm], None], *,
           security: Security | None = None, tls_role: str = "scheduler",
           roles: frozenset[str] | None = None, **kwargs: Any) -> Listener:
    """A listener at ``address`` whose connections must pass the handshake
    (``security``'s token; TLS with ``tls_role``'s certificate for a
    ``tls://`` address) as one of ``roles``."""
    scheme, loc = parse_address(address)
    if scheme == "inproc":
        from shoal.comm.inproc import InprocListener

        return InprocListener(loc, on_connection)
    _check_encryption(scheme, address, security)
    ctx = _tls_context(scheme, address, security, tls_role, server_side=True)
    from shoal.comm.handshake import ROLES
    from shoal.comm.tcp import TCPListener

    return TCPListener(loc, on_connection, token=None if security is None else security.token,
                       ssl_context=ctx, roles=frozenset(ROLES) if roles is None else roles,
                       **kwargs)


# ---------------------------------------------------------------------------
# handshake
# ---------------------------------------------------------------------------


async def connect_and_greet(
    address: str,
    role: str,
    name: str = "",
    timeout: float | None = None,
    retry: bool = False,
    extra: list[Any] | None = None,
    *,
    security: Security | None = None,
    server_hostname: str | None = None,
) -> tuple[Comm, Welcome]:
    """Connect (the handshake proving ``security``'s token), say ``Hello``
    (followed by ``extra`` messages, in the same batch), and wait for
    ``Welcome``; all within ``timeout``."""
    timeout = default_connect_timeout() if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    comm = await connect(address, timeout, retry, security=security, role=role,
                         server_hostname=server_hostname)
    try:
        comm.send([Hello(PROTOCOL_VERSION, role, name, os.getpid()), *(extra or [])])
        msgs = await comm.recv(max(0.01, deadline - loop.time()))
    except TimeoutError:
        comm.abort(None)
        raise TimeoutError(f"{address} did not complete the shoal handshake within {timeout} s") from None
    except OSError as e:
        comm.abort(None)
        raise OSError(f"connection to {address} failed during the handshake: {e}") from e
    except BaseException:  # cancelled (its owner is closing): the socket goes too
        comm.abort(None)
        raise
    first = msgs[0] if msgs else None
    if isinstance(first, Rejected):
        comm.abort(None)
        raise ConnectionRefusedError(f"{address} refused the connection: {first.reason}")
    if not isinstance(first, Welcome):
        comm.abort(None)
        raise RemoteProtocolError(f"{address} answered the handshake with {type(first).__name__}")
    # anything after the Welcome in the same batch stays queued for the owner
    if len(msgs) > 1:
        comm._pending.appendleft(msgs[1:])
    return comm, first


async def accept_greeting(comm: Comm, timeout: float | None = None) -> Hello:
    """Server side: read ``Hello`` and check the version (without answering)."""
    msgs = await comm.recv(default_connect_timeout() if timeout is None else timeout)
    first = msgs[0] if msgs else None
    if not isinstance(first, Hello):
        raise RemoteProtocolError(f"expected Hello, got {type(first).__name__}")
    if comm.peer_role and first.role != comm.peer_role:
        raise RemoteProtocolError(f"a peer that connected as {comm.peer_role!r} says it is "
                                  f"{first.role!r}")
    if first.version != PROTOCOL_VERSION:
        comm.send([Rejected(f"protocol version {first.version} is not {PROTOCOL_VERSION}")])
        raise RemoteProtocolError(
            f"peer speaks protocol version {first.version}, we speak {PROTOCOL_VERSION}"
        )
    if len(msgs) > 1:
        comm._pending.appendleft(msgs[1:])
    return first
