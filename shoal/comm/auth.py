"""Running the handshake (``handshake.py``) on a new socket, before it
becomes a ``Comm``; and the gate every listener keeps in front of it.

Data flow::

    connect: TCP connect -> [TLS handshake] -> client_handshake -> SocketComm
    accept:  Gate.admit -> [TLS handshake] -> server_handshake -> SocketComm -> on_connection

Rules:
1. Until the handshake is done the socket is read here, a record at a time
   and never further (``bytes_wanted``), so whatever follows it is left
   for the comm's frame decoder.  Nothing framed is decoded before.
2. Everything has a deadline: the connect timeout for the connecting side,
   ``comm.timeouts.handshake`` for the accepting side.
3. A listener has at most ``comm.max-unauthenticated`` connections in the
   handshake at once; more are refused at once (with a REFUSE saying so),
   and a line is logged at most once a second for them.
4. A failed handshake closes the socket and logs one line naming the
   peer's address (server side); the connecting side raises
   ``AuthenticationError`` (the token) or ``ConnectionRefusedError``/
   ``OSError`` (anything else), naming the address.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from typing import Any

from shoal.comm import handshake as hs
from shoal.comm.spin import touch as keep_polling
from shoal.errors import AuthenticationError

logger = logging.getLogger("shoal.comm")

_WOULD_BLOCK_READ = (BlockingIOError, InterruptedError, ssl.SSLWantReadError)


async def wait_socket(loop: asyncio.AbstractEventLoop, sock: socket.socket, writable: bool,
                      deadline: float) -> None:
    """Until ``sock`` is readable (or writable); ``TimeoutError`` at ``deadline``."""
    fd = sock.fileno()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        raise TimeoutError("timed out in the handshake") from None
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def send_all(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes,
                   deadline: float) -> None:
    view = memoryview(data)
    while view.nbytes:
        try:
            n = sock.send(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            await wait_socket(loop, sock, True, deadline)
            continue
        except ssl.SSLWantReadError:
            await wait_socket(loop, sock, False, deadline)
            continue
        view = view[n:]


async def recv_some(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int,
                    deadline: float) -> bytes:
    """At most ``n`` bytes (at least one); ``ConnectionResetError`` at EOF.
    The peer's answer comes within a round trip: the loop keeps polling for
    it a moment rather than sleep (shoal/comm/spin.py)."""
    keep_polling(loop)
    while True:
        try:
            data = sock.recv(n)
        except _WOULD_BLOCK_READ:
            await wait_socket(loop, sock, False, deadline)
            continue
        except ssl.SSLWantWriteError:
            await wait_socket(loop, sock, True, deadline)
            continue
        if not data:
            raise ConnectionResetError("the peer closed the connection during the handshake")
        return data


async def _run(loop: asyncio.AbstractEventLoop, sock: socket.socket, machine: hs._Machine,
               deadline: float) -> hs.HandshakeDone | hs.HandshakeFailed:
    """Drive ``machine`` until it is done or failed (what it sends is sent)."""
    while True:
        data = await recv_some(loop, sock, machine.bytes_wanted(), deadline)
        for event in machine.receive_data(data):
            if isinstance(event, hs.SendData):
                try:
                    await send_all(loop, sock, event.data, deadline)
                except (OSError, TimeoutError):
                    if not machine.finished:
                        raise
            else:
                return event


async def client_handshake(sock: socket.socket, role: str, token: str | None, deadline: float,
                           address: str) -> None:
    """Prove ourselves to the server at ``address`` and check its proof."""
    from shoal.protocol.messages import PROTOCOL_VERSION

    loop = asyncio.get_running_loop()
    machine = hs.ClientHandshake(role, token.encode() if token else None, os.urandom(hs.NONCE_SIZE),
                                 PROTOCOL_VERSION)
    try:
        await send_all(loop, sock, machine.start(), deadline)
        outcome = await _run(loop, sock, machine, deadline)
    except TimeoutError:
        raise TimeoutError(f"{address} did not complete the shoal handshake in time") from None
    except OSError as e:
        hint = (" (a TLS server? its address would start with tls://)"
                if isinstance(e, ConnectionResetError) and address.startswith("tcp://") else "")
        raise ConnectionResetError(f"connection to {address} failed during the handshake: "
                                   f"{e}{hint}") from e
    if isinstance(outcome, hs.HandshakeFailed):
        if outcome.auth:
            raise AuthenticationError(f"{outcome.reason} (connecting to {address})")
        if outcome.by_peer:
            raise ConnectionRefusedError(f"{address} refused the connection: {outcome.reason}")
        raise ConnectionRefusedError(f"handshake with {address} failed: {outcome.reason}")


async def server_handshake(sock: socket.socket, token: str | None, roles: frozenset[str],
                           deadline: float) -> str:
    """The client's proof checked and ours given: the role it connected as.
    Raises ``PermissionError`` (the token) or ``ConnectionError`` otherwise,
    with the reason; the socket is the caller's to close."""
    from shoal.protocol.messages import PROTOCOL_VERSION

    loop = asyncio.get_running_loop()
    machine = hs.ServerHandshake(token.encode() if token else None, os.urandom(hs.NONCE_SIZE),
                                 PROTOCOL_VERSION, roles)
    outcome = await _run(loop, sock, machine, deadline)
    if isinstance(outcome, hs.HandshakeFailed):
        raise (PermissionError if outcome.auth else ConnectionError)(outcome.reason)
    return outcome.role


class Gate:
    """A listener's limit on connections in the handshake at once."""

    def __init__(self, limit: int | None = None, timeout: float | None = None) -> None:
        from shoal import config

        self.limit = int(config.get("comm.max-unauthenticated")) if limit is None else limit
        self.timeout = (config.duration("comm.timeouts.handshake") or 5.0) if timeout is None \
            else timeout
        self.pending = 0
        self.refused = 0  # since the last log line about it
        self._last_log = 0.0

    def try_enter(self) -> bool:
        if self.pending >= self.limit:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_log >= 1.0:
                logger.warning("refused %d connection(s): already %d in the handshake (setting "
                               "comm.max-unauthenticated)", self.refused, self.pending)
                self._last_log, self.refused = now, 0
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending -= 1


def refuse_busy(sock: socket.socket) -> None:
    """Tell a connection refused by the gate why, if the socket takes it now."""
    try:
        sock.setblocking(False)
        sock.send(hs.refuse_record(hs.BUSY, "the server has too many connections in the "
                                            "handshake; try again"))
    except OSError:
        pass


def set_socket_options(sock: Any) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
