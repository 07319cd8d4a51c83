"""Length-prefixed multi-frame messages: bytes in, frames out.  PURE: no I/O.

Wire format of one message::

    b"SHL1"  u32 nframes  u64 len[0] ... u64 len[nframes-1]  frame[0] ... frame[n-1]

(all integers little-endian).  The magic makes garbage fail on the first bytes.

Rules:
1. ``FrameDecoder`` follows asyncio's ``BufferedProtocol`` contract: the I/O
   layer asks ``get_buffer()`` where to put the next bytes, reads into it, and
   reports ``buffer_updated(n)``, which returns every message completed.
2. Small frames are parsed out of one reusable staging buffer (many messages
   per read).  A large frame gets a buffer of its own, and the socket reads
   straight into it: its bytes are written once, by the kernel.
3. Frame 0 of a returned message may be a view into the staging buffer; it is
   valid until the next ``get_buffer()``.  All other frames are owned by the
   caller (``bytearray``, writable, so numpy arrays rebuilt over them are too).
4. Sizes are bounded; a violation raises ``RemoteProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from shoal.errors import LocalProtocolError, RemoteProtocolError

MAGIC = b"SHL1"
_HEAD = struct.Struct("<4sI")
HEAD_SIZE = _HEAD.size
#: frames above this size get a dedicated buffer and are read into directly
LARGE_FRAME = 64 * 1024
_STAGING = 256 * 1024

DEFAULT_MAX_FRAMES = 1 << 20
DEFAULT_MAX_FRAME_BYTES = 1 << 36  # 64 GiB
DEFAULT_MAX_MESSAGE_BYTES = 1 << 37


def encode_frames(frames: list[bytes | bytearray | memoryview]) -> list[bytes | bytearray | memoryview]:
    """The buffers to write for one message: a header, then the frames unchanged."""
    n = len(frames)
    if n == 0:
        raise LocalProtocolError("a message needs at least one frame")
    lengths = [memoryview(f).nbytes for f in frames]
    header = _HEAD.pack(MAGIC, n) + struct.pack(f"<{n}Q", *lengths)
    return [header, *frames]


class FrameDecoder:
    """Incremental decoder of the framing above."""

    def __init__(
        self,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        alloc: Callable[[int], Any] = bytearray,
    ) -> None:
        """``alloc(n)`` makes the writable buffer a large frame is read into;
        the transport may pass one that skips zero-filling."""
        self.alloc = alloc
        self.max_frames = max_frames
        self.max_frame_bytes = max_frame_bytes
        self.max_message_bytes = max_message_bytes
        self._buf = bytearray(_STAGING)
        self._start = 0  # first unparsed byte in _buf
        self._end = 0  # one past the last byte written into _buf
        # progress through the current message
        self._lengths: list[int] | None = None
        self._frames: list[bytes | bytearray | memoryview] = []
        # a large frame being filled directly
        self._big: Any = None
        self._big_filled = 0

    # -- the BufferedProtocol side --------------------------------------------

    def get_buffer(self) -> memoryview:
        if self._big is not None:
            return memoryview(self._big).cast("B")[self._big_filled :]
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buf) - self._end < LARGE_FRAME // 4:
            # slide the unparsed tail to the front to make room
            pending = self._end - self._start
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        if self._end == len(self._buf):
            self._grow(2 * len(self._buf))
        return memoryview(self._buf)[self._end :]

    def _grow(self, size: int) -> None:
        # Always a new buffer: views handed out earlier forbid resizing in place.
        pending = self._buf[self._start : self._end]
        self._buf = bytearray(max(size, len(pending) * 2, _STAGING))
        self._buf[: len(pending)] = pending
        self._start, self._end = 0, len(pending)

    def buffer_updated(self, nbytes: int) -> list[list[bytes | bytearray | memoryview]]:
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled < memoryview(self._big).nbytes:
                return []
            self._frames.append(self._big)
            self._big = None
            self._big_filled = 0
        else:
            self._end += nbytes
        return self._parse()

    # -- parsing ----------------------------------------------------------------

    def _detach_first_frame(self) -> None:
        """The message is incomplete: its frame 0 must outlive the staging buffer."""
        if self._frames and type(self._frames[0]) is memoryview:
            self._frames[0] = bytes(self._frames[0])

    def _parse(self) -> list[list[bytes | bytearray | memoryview]]:
        out: list[list[bytes | bytearray | memoryview]] = []
        buf = self._buf
        while True:
            if self._lengths is None:
                avail = self._end - self._start
                if avail < HEAD_SIZE:
                    return out
                magic, n = _HEAD.unpack_from(buf, self._start)
                if magic != MAGIC:
                    raise RemoteProtocolError(
                        f"bad frame header {bytes(buf[self._start:self._start + 8])!r}: "
                        "not a shoal connection, or the stream is corrupt"
                    )
                if n == 0 or n > self.max_frames:
                    raise RemoteProtocolError(f"message with {n} frames (limit {self.max_frames})")
                if avail < HEAD_SIZE + 8 * n:
                    if HEAD_SIZE + 8 * n > len(buf) - self._start:
                        self._grow(2 * (HEAD_SIZE + 8 * n))
                    return out
                lengths = list(struct.unpack_from(f"<{n}Q", buf, self._start + HEAD_SIZE))
                if max(lengths) > self.max_frame_bytes:
                    raise RemoteProtocolError(
                        f"frame of {max(lengths)} bytes exceeds the limit of {self.max_frame_bytes}"
                    )
                if sum(lengths) > self.max_message_bytes:
                    raise RemoteProtocolError(f"message of {sum(lengths)} bytes exceeds the limit")
                self._start += HEAD_SIZE + 8 * n
                self._lengths = lengths
                self._frames = []
            lengths = self._lengths
            while len(self._frames) < len(lengths):
                size = lengths[len(self._frames)]
                avail = self._end - self._start
                if size > LARGE_FRAME and avail < size:
                    try:
                        big = self.alloc(size)
                    except (MemoryError, OSError, ValueError) as e:
                        raise RemoteProtocolError(f"no memory for a frame of {size} bytes: {e}"
                                                  ) from None
                    memoryview(big).cast("B")[:avail] = buf[self._start : self._end]
                    self._start = self._end
                    self._big, self._big_filled = big, avail
                    self._detach_first_frame()
                    return out
                if avail < size:
                    self._detach_first_frame()
                    if size > len(buf) - self._start:
                        self._grow(2 * size)  # room for this small frame
                    return out
                lo = self._start
                self._start += size
                if not self._frames:
                    self._frames.append(memoryview(buf)[lo : lo + size])
                else:
                    self._frames.append(bytearray(buf[lo : lo + size]))
            out.append(self._frames)
            self._frames = []
            self._lengths = None
