"""TCP transport on raw non-blocking sockets driven by the event loop's
``add_reader``/``add_writer``.

Why not asyncio streams or transports: we need (a) ``recv_into`` straight
into the final buffer of a large frame and (b) ``sendmsg`` of a list of
buffers that are kept by reference until the kernel took them.  Both together
make a 200 MB numpy array cross a socket without a user-space copy on either
side.  asyncio's selector transport copies unsent data into its own buffer.

Data flow::

    send(msgs) -> codec.encode -> [header, frame0, buffers...] -> sendmsg
                                        (unsent tail kept as memoryviews)
    readable  -> recv_into(FrameDecoder.get_buffer()) -> frames -> codec.decode
              -> on_messages(batch)
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from shoal.comm.addresses import bind_socket, parse_host_port, unparse_host_port
from shoal.comm.auth import (
    Gate,
    client_handshake,
    refuse_busy,
    server_handshake,
    set_socket_options,
)
from shoal.comm.core import Comm, Listener, StallClock, frame_limits, send_queue_limits
from shoal.comm.framing import FrameDecoder, encode_frames
from shoal.comm.handshake import ROLES
from shoal.comm.spin import touch as keep_polling
from shoal.errors import CommClosedError, RemoteProtocolError

logger = logging.getLogger("shoal.comm")

_IOV_MAX = 512
#: drain() waits while more than this many bytes are queued
HIGH_WATER = 16 * 1024 * 1024
#: reads per readiness callback, so one busy peer cannot starve the others
_READS_PER_WAKEUP = 32


def alloc_frame(size: int) -> Any:
    """A writable buffer for a large incoming frame, not zero-filled.

    ``bytearray(n)`` writes n zero bytes first, which for a 200 MB frame costs
    as much as receiving it.  ``numpy.empty`` leaves the pages untouched until
    the socket writes them, and numpy asks for transparent huge pages, so they
    are faulted in 2 MB at a time.  Without numpy (a worker that has not
    unpickled an array yet) a private anonymous mapping with huge pages asked
    for does the same: filling 200 MB took 77 ms here, against 153 ms with
    4 KB pages and 178 ms for a shared mapping, which is what
    ``mmap.mmap(-1, n)`` makes and what such a worker used to receive into
    (scatter over TCP ran at 1.1 GB/s).
    """
    np = sys.modules.get("numpy")
    if np is not None:
        return np.empty(size, dtype=np.uint8)
    if not hasattr(mmap, "MAP_PRIVATE"):  # pragma: no cover - Windows
        return mmap.mmap(-1, size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # pragma: no cover - no THP in this kernel
            pass
    return buf


def _format_addr(sockaddr: Any, scheme: str = "tcp") -> str:
    if isinstance(sockaddr, tuple):
        return f"{scheme}://" + unparse_host_port(sockaddr[0], sockaddr[1])
    return f"{scheme}://{sockaddr}"


class SocketComm(Comm):
    """A connection whose handshake is done (``shoal/comm/auth.py``)."""

    threadsafe_send = True
    scheme = "tcp"
    #: what a read raising means "nothing more for now" (TLS adds its own)
    _would_block: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError)

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 limits: tuple[int, int] | None = None) -> None:
        super().__init__()
        set_socket_options(sock)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        frame, message = limits or frame_limits()
        self._decoder = FrameDecoder(max_frame_bytes=frame, max_message_bytes=message,
                                     alloc=alloc_frame)
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._writing = False
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # a peer that stops reading: see send_queue_limits()
        self._queue_limit, stall_timeout = send_queue_limits()
        self._stall = StallClock(stall_timeout)
        self._lock = threading.Lock()  # send() may be called from other threads
        self._loop_thread = threading.get_ident()  # made on its loop's thread
        try:
            self.local_address = _format_addr(sock.getsockname(), self.scheme)
            self.peer_address = _format_addr(sock.getpeername(), self.scheme)
        except OSError:
            pass
        loop.add_reader(self._fd, self._on_readable)

    # -- reading --------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self.keeps_loop_polling:
            keep_polling(self._loop)  # replies come soon: see shoal/comm/spin.py
        decoder = self._decoder
        recv_into = self._sock.recv_into
        try:
            for _ in range(_READS_PER_WAKEUP):
                buf = decoder.get_buffer()
                want = len(buf)
                n = recv_into(buf)
                del buf
                if n == 0:
                    self.abort(CommClosedError(f"connection closed by {self.peer_address}"))
                    return
                for frames in decoder.buffer_updated(n):
                    self._deliver_frames(frames)
                    if self.closed:
                        return
                if n < want:
                    return
        except self._would_block:
            return
        except RemoteProtocolError as e:
            logger.error("closing connection from %s: %s", self.peer_address, e)
            self.abort(e)
        except OSError as e:
            self.abort(CommClosedError(f"connection to {self.peer_address} lost: {e}"))

    # -- writing --------------------------------------------------------------------

    def send(self, msgs: list[Any]) -> None:
        """Queue ``msgs`` and write what the socket takes now.  Callable from
        any thread (a client's calling thread sends without waking its event
        loop); only the loop thread waits for the socket to become writable."""
        with self._lock:
            if self.closed:
                raise CommClosedError(f"connection to {self.peer_address} is closed") from self.close_reason
            frames = encode_frames(self.codec.encode(msgs))
            out = self._out
            for f in frames:
                mv = memoryview(f)
                if mv.format != "B" or mv.ndim != 1:
                    mv = mv.cast("B")
                if mv.nbytes:
                    out.append(mv)
                    self._out_bytes += mv.nbytes
            if self._writing:  # the writable callback will take it from here
                if self._out_bytes <= self._queue_limit or not self._peer_stalled():
                    return
                error: BaseException | None = self._stall_error()
                pending = False
            else:
                error = self._push()
                pending = bool(self._out)
        in_loop = threading.get_ident() == self._loop_thread
        if error is not None:
            self._abort_soon(error, in_loop)
        elif pending:
            if in_loop:
                self._start_writing()
            else:
                self._loop.call_soon_threadsafe(self._start_writing)
        elif in_loop and self._drain_waiters:
            self._resolve_waiters()

    def _push(self) -> BaseException | None:
        """With the lock held: hand the kernel what it takes now."""
        out = self._out
        sendmsg = self._sock.sendmsg
        try:
            while out:
                bufs = list(out) if len(out) <= _IOV_MAX else [out[i] for i in range(_IOV_MAX)]
                sent = sendmsg(bufs)
                self._out_bytes -= sent
                while sent:
                    head = out[0]
                    if sent >= head.nbytes:
                        sent -= head.nbytes
                        out.popleft()
                    else:
                        out[0] = head[sent:]
                        sent = 0
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            return CommClosedError(f"connection to {self.peer_address} lost: {e}")
        return None

    def _peer_stalled(self) -> bool:
        return self._stall.stalled(time.monotonic())

    def _stall_error(self) -> BaseException:
        msg = (f"closing connection to {self.peer_address}: it has read next to nothing "
               f"(under {self._stall.min_bytes:,} bytes) for {self._stall.timeout:g} s while "
               f"{self._out_bytes:,} bytes wait to be sent "
               "(settings comm.send-queue.limit and comm.send-queue.stall-timeout)")
        logger.error(msg)
        return CommClosedError(msg)

    def _abort_soon(self, error: BaseException, in_loop: bool) -> None:
        if in_loop:
            self.abort(error)
        else:
            self._loop.call_soon_threadsafe(self.abort, error)

    def _start_writing(self) -> None:
        """On the loop thread: wait for room in the socket's buffer."""
        with self._lock:
            if self._out and not self._writing and not self.closed:
                self._writing = True
                self._stall.waiting_from(time.monotonic())
                self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        with self._lock:
            before = self._out_bytes
            error = self._push()
            if self._out_bytes < before:
                self._stall.took(before - self._out_bytes, not self._out, time.monotonic())
            if error is None and not self._out and self._writing:
                self._writing = False
                self._loop.remove_writer(self._fd)
        if error is not None:
            self.abort(error)
        elif self._drain_waiters:
            self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        still = []
        for threshold, w in self._drain_waiters:
            if self._out_bytes <= threshold:
                if not w.done():
                    w.set_result(None)
            else:
                still.append((threshold, w))
        self._drain_waiters = still

    async def _wait_below(self, threshold: int) -> None:
        if self.closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        if self._out_bytes <= threshold:
            return
        w = self._loop.create_future()
        self._drain_waiters.append((threshold, w))
        await w
        if self.closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")

    async def drain(self) -> None:
        await self._wait_below(HIGH_WATER)

    async def flushed(self) -> None:
        await self._wait_below(0)

    @property
    def queued_bytes(self) -> int:
        return self._out_bytes

    # -- closing -------------------------------------------------------------------

    def abort(self, exc: BaseException | None = None) -> None:
        """Close now, dropping what is unsent.  On the loop thread (others:
        ``loop.call_soon_threadsafe(comm.abort)``)."""
        if self.closed:
            return
        with self._lock:
            self.closed = True  # senders on other threads stop here
            try:
                self._loop.remove_reader(self._fd)
                if self._writing:
                    self._loop.remove_writer(self._fd)
            except Exception:  # the loop may already be closed
                pass
            self._writing = False
            self._out.clear()
            self._out_bytes = 0
            try:
                self._sock.close()
            except OSError:
                pass
        for _, w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters = []
        self._closed(exc)


class TCPListener(Listener):
    """Accepts TCP (or, with ``ssl_context``, TLS) connections; each goes
    through the gate and the handshake before it is handed on as a Comm."""

    def __init__(
        self,
        location: str,
        on_connection: Callable[[Comm], None],
        sock: socket.socket | None = None,
        *,
        token: str | None = None,
        ssl_context: Any = None,
        roles: frozenset[str] = frozenset(ROLES),
    ) -> None:
        self.location = location
        self.on_connection = on_connection
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self.token = token
        self.ssl_context = ssl_context
        self.roles = roles
        self.scheme = "tls" if ssl_context is not None else "tcp"
        self.gate = Gate()
        self._admitting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._sock is None:
            host, port = parse_host_port(self.location, 0)
            self._sock = bind_socket(host, port)
        self._sock.setblocking(False)
        self.address = _format_addr(self._sock.getsockname()[:2], self.scheme)
        self._loop.add_reader(self._sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        assert self._sock is not None and self._loop is not None
        for _ in range(64):
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: log, keep listening
                logger.error("accept failed on %s: %s", self.address, e)
                return
            if not self.gate.try_enter():
                refuse_busy(conn)
                conn.close()
                continue
            task = self._loop.create_task(self._admit(conn, _format_addr(addr, self.scheme)))
            self._admitting.add(task)
            task.add_done_callback(self._admitting.discard)

    async def _admit(self, conn: socket.socket, peer: str) -> None:
        """The handshake of one accepted connection; a comm for it if it passes."""
        assert self._loop is not None
        sock: Any = conn
        try:
            deadline = self._loop.time() + self.gate.timeout
            set_socket_options(conn)
            if self.ssl_context is not None:
                from shoal.comm.tls import TLSSocketComm, tls_accept

                sock = await tls_accept(conn, self.ssl_context, deadline)
                role = await server_handshake(sock, self.token, self.roles, deadline)
                comm: SocketComm = TLSSocketComm(sock, self._loop)
            else:
                role = await server_handshake(sock, self.token, self.roles, deadline)
                comm = SocketComm(sock, self._loop)
        except PermissionError as e:
            logger.warning("%s: refused %s: %s", self.address, peer, e)
            _close_after_refusal(sock)
            return
        except (OSError, TimeoutError) as e:
            # a peer leaving mid-handshake is no attack (a process closing)
            log = logger.info if isinstance(e, ConnectionResetError) else logger.warning
            log("%s: handshake with %s failed: %s", self.address, peer, e)
            _close_after_refusal(sock)
            return
        except BaseException:
            sock.close()
            raise
        finally:
            self.gate.leave()
        comm.peer_role = role
        self.on_connection(comm)

    def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                try:
                    self._loop.remove_reader(self._sock.fileno())
                except Exception:
                    pass
            self._sock.close()
            self._sock = None
        for task in list(self._admitting):
            task.cancel()


def _close_after_refusal(sock: Any) -> None:
    """Close a refused connection, first dropping what it sent that is
    already here: closing with unread bytes would reset the connection, and
    the peer could lose our REFUSE explaining why."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                break
    except Exception:
        pass
    sock.close()


async def _open_socket(location: str, deadline: float, timeout: float, retry: bool,
                       scheme: str) -> socket.socket:
    """A connected socket within ``deadline``; with ``retry``, refused
    connects are tried again until then."""
    host, port = parse_host_port(location)
    loop = asyncio.get_running_loop()
    delay = 0.01
    last: BaseException | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), remaining
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, sockaddr), max(0.001, deadline - loop.time()))
            except BaseException:
                sock.close()
                raise
            return sock
        except asyncio.TimeoutError:
            last = TimeoutError("timed out")
            break
        except OSError as e:
            last = e
            if not retry:
                break
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.5)
    if isinstance(last, TimeoutError) or last is None:
        raise TimeoutError(f"timed out after {timeout} s trying to connect to {scheme}://{location}")
    raise OSError(
        getattr(last, "errno", None), f"could not connect to {scheme}://{location}: {last}"
    ) from last


async def tcp_connect(location: str, timeout: float, retry: bool, *, role: str = "client",
                      token: str | None = None, ssl_context: Any = None,
                      server_hostname: str | None = None) -> SocketComm:
    """Connect within ``timeout`` (handshake included; with ``retry``, keep
    trying refused connects), over TLS with ``ssl_context``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    scheme = "tls" if ssl_context is not None else "tcp"
    address = f"{scheme}://{location}"
    sock: Any = await _open_socket(location, deadline, timeout, retry, scheme)
    try:
        set_socket_options(sock)
        if ssl_context is not None:
            from shoal.comm.tls import TLSSocketComm, tls_connect

            host = server_hostname or parse_host_port(location)[0]
            sock = await tls_connect(sock, ssl_context, host, deadline, address)
            await client_handshake(sock, role, token, deadline, address)
            return TLSSocketComm(sock, loop)
        await client_handshake(sock, role, token, deadline, address)
        return SocketComm(sock, loop)
    except BaseException:
        sock.close()
        raise
