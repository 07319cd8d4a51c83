"""TLS (``tls://`` addresses): the standard library's ``ssl`` on the same raw
non-blocking sockets as ``tcp.py``.

Data flow::

    connect: TCP socket -> wrap_socket(server_hostname=host) -> do_handshake
             -> the token handshake inside TLS -> TLSSocketComm
    accept:  peek: a plain shoal client? refuse it, saying TLS is required
             -> wrap_socket(server_side) -> do_handshake -> token handshake -> TLSSocketComm

Rules:
1. Mutual TLS: both sides present a certificate signed by the cluster's
   CA (``Security.tls_ca_file``); a connecting side also checks that the
   server's certificate names the host it connected to (unless
   ``tls_check_hostname=False``).
2. An SSL object must not be read and written by two threads at once, so a
   TLS comm is written from its event loop thread only
   (``threadsafe_send = False``: callers then go through the loop).
3. ``ssl`` may hold decrypted bytes the kernel no longer signals
   (``pending()``): the reader keeps reading while there are any.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
from typing import Any

from shoal.comm import handshake as hs
from shoal.comm.auth import wait_socket
from shoal.comm.tcp import SocketComm
from shoal.errors import CommClosedError

_COALESCE = 256 * 1024


def make_context(tls: dict[str, Any], server_side: bool, min_version: Any, max_version: Any,
                 check_hostname: bool) -> ssl.SSLContext:
    """An ``SSLContext`` from a role's TLS files (paths or PEM text)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ca = tls["ca_file"]
    try:
        if "\n" in ca:
            ctx.load_verify_locations(cadata=ca)
        else:
            ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"TLS: cannot load the CA certificate {_label(ca)}: {e}") from None
    ctx.minimum_version = min_version or ssl.TLSVersion.TLSv1_2
    if max_version is not None:
        ctx.maximum_version = max_version
    _load_chain(ctx, tls["cert"], tls.get("key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server_side:
        ctx.check_hostname = check_hostname
    if tls.get("ciphers"):
        try:
            ctx.set_ciphers(tls["ciphers"])
        except ssl.SSLError as e:
            raise ValueError(f"TLS: bad cipher string {tls['ciphers']!r}: {e}") from None
    return ctx


def _label(value: str) -> str:
    return "(PEM text)" if "\n" in value else value


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load a certificate and key given as files or PEM text (``ssl`` reads
    files only: text goes through a private temporary directory)."""
    try:
        if "\n" not in cert and (key is None or "\n" not in key):
            ctx.load_cert_chain(cert, key)
            return
        with tempfile.TemporaryDirectory(prefix="shoal-tls-") as tmp:  # mode 0700
            paths = []
            for name, value in (("cert.pem", cert), ("key.pem", key)):
                if value is None or "\n" not in value:
                    paths.append(value)
                    continue
                path = os.path.join(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
                paths.append(path)
            ctx.load_cert_chain(str(paths[0]), paths[1])
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"TLS: cannot load the certificate {_label(cert)} and its key: {e}") from None


async def _do_handshake(sock: ssl.SSLSocket, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await wait_socket(loop, sock, False, deadline)
        except ssl.SSLWantWriteError:
            await wait_socket(loop, sock, True, deadline)


def _tls_failure(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the certificate was not accepted: {e.verify_message or e}"
    text = str(getattr(e, "reason", None) or e)
    if "WRONG_VERSION_NUMBER" in text.upper() or "wrong version number" in text:
        return f"{text} (does it speak TLS? a plain server's address starts with tcp://)"
    return text


async def tls_connect(sock: socket.socket, ctx: ssl.SSLContext, host: str, deadline: float,
                      address: str) -> ssl.SSLSocket:
    """The TLS handshake as the connecting side, checking ``host``."""
    tsock = ctx.wrap_socket(sock, server_side=False, do_handshake_on_connect=False,
                            server_hostname=host)
    try:
        await _do_handshake(tsock, deadline)
    except TimeoutError:
        tsock.close()
        raise TimeoutError(f"{address} did not complete the TLS handshake in time") from None
    except (ssl.SSLError, OSError) as e:
        tsock.close()
        raise ConnectionRefusedError(f"TLS handshake with {address} failed: {_tls_failure(e)}"
                                     ) from None
    return tsock


async def tls_accept(sock: socket.socket, ctx: ssl.SSLContext, deadline: float) -> ssl.SSLSocket:
    """The TLS handshake as the accepting side.  A client that speaks shoal
    without TLS is told that TLS is required, then refused
    (``ConnectionError``); so is one whose certificate is not accepted."""
    loop = asyncio.get_running_loop()
    await wait_socket(loop, sock, False, deadline)
    try:
        first = sock.recv(len(hs.MAGIC), socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        first = b"?"
    if not first:
        raise ConnectionError("closed before the TLS handshake")
    if hs.MAGIC.startswith(first):
        try:
            sock.send(hs.refuse_record(hs.REFUSED, "this server requires TLS: connect to its "
                                                   "tls:// address with a Security"))
        except OSError:
            pass
        raise ConnectionError("a client without TLS (this listener requires TLS)")
    tsock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        await _do_handshake(tsock, deadline)
    except (ssl.SSLError, OSError) as e:
        tsock.close()
        raise ConnectionError(f"TLS handshake failed: {_tls_failure(e)}") from None
    return tsock


class TLSSocketComm(SocketComm):
    """``SocketComm`` over an ``ssl.SSLSocket``: written from the loop only,
    without ``sendmsg`` (small frames are joined into one write)."""

    threadsafe_send = False
    scheme = "tls"
    _would_block = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError)

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(sock, loop)
        self._retry: bytes | memoryview | None = None  # a write ssl asked to repeat, as it was
        if sock.pending():  # decrypted already while the handshake was read
            loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        super()._on_readable()
        if not self.closed and self._sock.pending():  # type: ignore[attr-defined]
            self._loop.call_soon(self._on_readable)

    def _push(self) -> BaseException | None:
        out = self._out
        send = self._sock.send
        try:
            while out:
                chunk = self._retry
                if chunk is None:
                    parts = []
                    size = 0
                    for mv in out:
                        parts.append(mv)
                        size += mv.nbytes
                        if size >= _COALESCE:
                            break
                    chunk = parts[0][:4 * _COALESCE] if len(parts) == 1 else b"".join(parts)
                    self._retry = chunk
                sent = send(chunk)
                self._retry = None
                self._out_bytes -= sent
                while sent:
                    head = out[0]
                    if sent >= head.nbytes:
                        sent -= head.nbytes
                        out.popleft()
                    else:
                        out[0] = head[sent:]
                        sent = 0
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        except OSError as e:
            return CommClosedError(f"connection to {self.peer_address} lost: {e}")
        return None
