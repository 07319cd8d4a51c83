"""In-process transport: ``inproc://name``.

Both ends live in one process.  Messages still go through the codec and the
framing (every frame is copied, as a socket would), so a test over inproc
exercises everything but the kernel; the two ends may run on different event
loops.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

from shoal.comm.core import Comm, Listener
from shoal.comm.framing import FrameDecoder, encode_frames
from shoal.errors import CommClosedError, RemoteProtocolError

_listeners: dict[str, InprocListener] = {}
_lock = threading.Lock()
_ids = itertools.count(1)


class InprocComm(Comm):
    def __init__(self, loop: asyncio.AbstractEventLoop, local: str, peer: str) -> None:
        super().__init__()
        self._loop = loop
        self._peer: InprocComm | None = None
        self._decoder = FrameDecoder()
        self.local_address = local
        self.peer_address = peer

    def send(self, msgs: list[Any]) -> None:
        if self.closed or self._peer is None:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        # one contiguous copy: what a socket would carry
        data = b"".join(bytes(memoryview(f).cast("B")) for f in encode_frames(self.codec.encode(msgs)))
        peer = self._peer
        peer._loop.call_soon_threadsafe(peer._receive, data)

    def _receive(self, data: bytes) -> None:
        if self.closed:
            return
        view = memoryview(data)
        try:
            while view.nbytes:
                buf = self._decoder.get_buffer()
                n = min(len(buf), view.nbytes)
                buf[:n] = view[:n]
                del buf
                view = view[n:]
                for frames in self._decoder.buffer_updated(n):
                    self._deliver_frames(frames)
                    if self.closed:
                        return  # type: ignore[unreachable]  # a handler may close us
        except RemoteProtocolError as e:
            self.abort(e)

    async def drain(self) -> None:
        if self.closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")

    async def flushed(self) -> None:
        await self.drain()

    def abort(self, exc: BaseException | None = None) -> None:
        if self.closed:
            return
        peer, self._peer = self._peer, None
        self._closed(exc)
        if peer is not None and not peer.closed:
            err = CommClosedError(f"connection closed by {self.local_address}")
            try:
                peer._loop.call_soon_threadsafe(peer.abort, err)
            except RuntimeError:  # the peer's loop is closed
                peer._closed(err)


class InprocListener(Listener):
    def __init__(self, name: str, on_connection: Callable[[Comm], None]) -> None:
        self.name = name or f"listener-{next(_ids)}"
        self.on_connection = on_connection
        self.address = f"inproc://{self.name}"
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with _lock:
            if self.name in _listeners:
                raise OSError(f"inproc address {self.address} is already in use")
            _listeners[self.name] = self

    def stop(self) -> None:
        with _lock:
            if _listeners.get(self.name) is self:
                del _listeners[self.name]


async def inproc_connect(name: str, timeout: float, retry: bool) -> InprocComm:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with _lock:
            listener = _listeners.get(name)
        if listener is not None and listener._loop is not None:
            break
        if not retry or loop.time() > deadline:
            raise ConnectionRefusedError(f"could not connect to inproc://{name}: nobody listens there")
        await asyncio.sleep(0.01)
    n = next(_ids)
    here = InprocComm(loop, f"inproc://{name}/client-{n}", f"inproc://{name}")
    there = InprocComm(listener._loop, f"inproc://{name}", f"inproc://{name}/client-{n}")
    here._peer, there._peer = there, here
    listener._loop.call_soon_threadsafe(listener.on_connection, there)
    return here
