"""Messages <-> frames.  PURE: no I/O.

A batch of messages is msgpack-encoded into frame 0.  Each ``Payload`` inside
becomes a msgpack extension:

* code 1 -- a small, self-contained pickle: the extension *is* the pickle;
* code 2 -- ``u32 data_frame, u32 nbuf, u32 buffer_frame * nbuf`` followed by
  the pickle bytes when ``data_frame`` is 0: the pickle and every out-of-band
  buffer travel as frames of their own, never copied into frame 0.

Decoding a message that does not fit the schema raises ``RemoteProtocolError``.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from shoal.errors import LocalProtocolError, RemoteProtocolError
from shoal.protocol.messages import Message
from shoal.protocol.serialize import Payload

_EXT_INLINE = 1
_EXT_FRAMES = 2
#: a pickle stream larger than this gets its own frame
INLINE_PICKLE_MAX = 64 * 1024
_U32 = struct.Struct("<I")

Frame = bytes | bytearray | memoryview


class MessageCodec:
    """Encodes and decodes batches for one connection (not thread-safe)."""

    def __init__(self) -> None:
        self._out_frames: list[Frame] = []
        self._in_frames: list[Frame] = []
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._decoder = msgspec.msgpack.Decoder(
            list[Message], ext_hook=self._ext_hook, dec_hook=self._dec_hook
        )

    # -- encoding ---------------------------------------------------------------

    def encode(self, messages: list[Any]) -> list[Frame]:
        frames: list[Frame] = [b""]
        self._out_frames = frames
        try:
            frames[0] = self._encoder.encode(messages)
        except (TypeError, ValueError, OverflowError) as e:
            raise LocalProtocolError(f"could not encode {messages[:3]!r}...: {e}") from e
        finally:
            self._out_frames = []
        return frames

    def _enc_hook(self, obj: Any) -> Any:
        if type(obj) is Payload:
            data, buffers = obj.data, obj.buffers
            if not buffers and len(data) <= INLINE_PICKLE_MAX:
                return msgspec.msgpack.Ext(_EXT_INLINE, data)
            frames = self._out_frames
            if len(data) > INLINE_PICKLE_MAX:
                frames.append(data)
                head = [len(frames) - 1, len(buffers)]
                tail = b""
            else:
                head = [0, len(buffers)]
                tail = bytes(data)
            for b in buffers:
                frames.append(b)
                head.append(len(frames) - 1)
            return msgspec.msgpack.Ext(_EXT_FRAMES, struct.pack(f"<{len(head)}I", *head) + tail)
        raise TypeError(f"cannot encode objects of type {type(obj).__name__} in a message")

    # -- decoding ---------------------------------------------------------------

    def decode(self, frames: list[Frame]) -> list[Any]:
        self._in_frames = frames
        try:
            msgs = self._decoder.decode(frames[0])
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise RemoteProtocolError(f"malformed message: {e}") from e
        finally:
            self._in_frames = []
        return msgs

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code == _EXT_INLINE:
            return Payload(bytes(data))
        if code != _EXT_FRAMES or len(data) < 8:
            raise RemoteProtocolError(f"unknown extension type {code}")
        frames = self._in_frames
        data_frame, nbuf = struct.unpack_from("<2I", data)
        end = 8 + 4 * nbuf
        if len(data) < end:
            raise RemoteProtocolError("truncated payload header")
        idx = struct.unpack_from(f"<{nbuf}I", data, 8)
        try:
            pickled = frames[data_frame] if data_frame else bytes(data[end:])
            buffers = [frames[i] for i in idx]
        except IndexError:
            raise RemoteProtocolError("payload refers to a frame that was not sent") from None
        if data_frame == 0 and pickled == b"" and not idx:
            raise RemoteProtocolError("empty payload")
        if 0 in idx:
            raise RemoteProtocolError("payload refers to frame 0")
        return Payload(pickled, buffers)

    @staticmethod
    def _dec_hook(tp: type, obj: Any) -> Any:
        if tp is Payload and type(obj) is Payload:
            return obj
        raise TypeError(f"expected {tp.__name__}, got {type(obj).__name__}")
