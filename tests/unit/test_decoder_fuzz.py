"""Fuzzing the decoders an authenticated peer's bytes go through: the frame
decoder and the message decoder.  Whatever arrives (truncated frames, huge
lengths, wrong types, unknown ops, random msgpack, corrupted payload
references), the only outcomes are messages or ``RemoteProtocolError``
(which closes that one connection); nothing is allocated past the limits.

``scripts/fuzz_cluster.py`` throws the same at a running scheduler for
longer, and checks that it keeps serving a working client.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.comm.codec import MessageCodec
from shoal.comm.framing import MAGIC, FrameDecoder, encode_frames
from shoal.errors import RemoteProtocolError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload

FRAME_LIMIT = 1 << 20
MESSAGE_LIMIT = 4 << 20


def _bounded_alloc(size: int) -> bytearray:
    assert size <= FRAME_LIMIT, f"allocated {size} bytes past the limit"
    return bytearray(size)


def decode_stream(data: bytes, chunks: list[int]) -> list[list[Any]]:
    decoder = FrameDecoder(max_frames=64, max_frame_bytes=FRAME_LIMIT,
                           max_message_bytes=MESSAGE_LIMIT, alloc=_bounded_alloc)
    out = []
    view = memoryview(data)
    sizes = iter(chunks)
    while view.nbytes:
        buf = decoder.get_buffer()
        n = min(len(buf), view.nbytes, max(1, next(sizes, view.nbytes)))
        buf[:n] = view[:n]
        del buf
        view = view[n:]
        out += [[bytes(f) for f in frames] for frames in decoder.buffer_updated(n)]
    return out


def header(lengths: list[int], n: int | None = None) -> bytes:
    count = len(lengths) if n is None else n
    return MAGIC + struct.pack("<I", count) + struct.pack(f"<{len(lengths)}Q", *lengths)


lengths = st.lists(st.integers(0, 300) | st.integers(0, 1 << 63), min_size=0, max_size=5)
frame_streams = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda ls, n, tail: header(ls, n) + tail, lengths,
              st.none() | st.integers(0, 1 << 32 - 1), st.binary(max_size=400)),
    st.builds(lambda ls, tail: header(ls) + tail, lengths, st.binary(max_size=400)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=frame_streams, chunks=st.lists(st.integers(1, 64), max_size=20))
def test_the_frame_decoder_gives_messages_or_a_protocol_error(data: bytes, chunks: list[int]
                                                              ) -> None:
    try:
        messages = decode_stream(data, chunks)
    except RemoteProtocolError:
        return
    for frames in messages:
        assert 1 <= len(frames) <= 64
        assert all(len(f) <= FRAME_LIMIT for f in frames)


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.binary(max_size=200), min_size=1, max_size=4), cut=st.integers(0, 10_000))
def test_a_truncated_stream_holds_no_message(frames: list[bytes], cut: int) -> None:
    whole = b"".join(bytes(f) for f in encode_frames(list(frames)))
    cut %= len(whole)
    assert decode_stream(whole[:cut], []) == []
    assert decode_stream(whole, [cut or 1]) == [frames]


# -- the message decoder ---------------------------------------------------------------------

OPS = [info.tag for info in msgspec.inspect.multi_type_info(
    [t for t in m.Message.__args__])]  # type: ignore[attr-defined]
scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
           | st.text(max_size=20) | st.binary(max_size=20))
exts = st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=40))
values = st.recursive(scalars | exts, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
fake_messages = st.builds(lambda op, fields: [op, *fields],
                          st.sampled_from(OPS) | st.text(max_size=10), st.lists(values, max_size=6))


def decode(frame0: bytes, extra: list[bytes]) -> list[Any] | None:
    try:
        return MessageCodec().decode([frame0, *extra])  # type: ignore[list-item]
    except RemoteProtocolError:
        return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(fake_messages, max_size=4) | values,
       extra=st.lists(st.binary(max_size=30), max_size=3))
def test_random_msgpack_is_messages_or_a_protocol_error(batch: Any, extra: list[bytes]) -> None:
    out = decode(msgspec.msgpack.encode(batch), extra)
    if out is not None:
        assert all(isinstance(msg, m.Message.__args__) for msg in out)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_are_messages_or_a_protocol_error(data: bytes) -> None:
    decode(data, [])


def _payload_ext(data_frame: int, idx: list[int], tail: bytes) -> msgspec.msgpack.Ext:
    head = struct.pack(f"<2I{len(idx)}I", data_frame, len(idx), *idx)
    return msgspec.msgpack.Ext(2, head + tail)


@settings(max_examples=300, deadline=None)
@given(data_frame=st.integers(0, (1 << 32) - 1), idx=st.lists(st.integers(0, (1 << 32) - 1), max_size=4),
       claimed=st.none() | st.integers(0, (1 << 32) - 1), tail=st.binary(max_size=20),
       frames=st.integers(0, 3))
def test_payload_references_are_checked(data_frame: int, idx: list[int], claimed: int | None,
                                        tail: bytes, frames: int) -> None:
    """A payload pointing at frames that were not sent, at frame 0, or with a
    wrong count of buffers is refused; a valid one keeps its frames."""
    ext = _payload_ext(data_frame, idx, tail)
    if claimed is not None:  # a lying buffer count
        ext = msgspec.msgpack.Ext(2, struct.pack("<2I", data_frame, claimed) + ext.data[8:])
    raw = msgspec.msgpack.encode([["put-data", 1, {"x": ext}]])
    out = decode(raw, [b"f%d" % i for i in range(frames)])
    if out is not None:
        payload = out[0].data["x"]
        assert isinstance(payload, Payload)
        if claimed is None:  # (with a lying count the buffers are other bytes: checked alike)
            assert 0 not in idx and all(1 <= i <= frames for i in idx)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_real_messages_truncated_or_corrupted(cut: int, flip: int, bit: int) -> None:
    msgs = [m.Request(7, "who_has", {"keys": ["a", "b"]}), m.ReleaseKeys(["a"]),
            m.PutData(3, {"x": Payload(b"\x80\x05K\x01.")}, {"x": 5}, {"x": "int"}),
            m.Heartbeat()]
    frame0 = bytes(MessageCodec().encode(msgs)[0])
    decode(frame0[: cut % len(frame0)], [])
    corrupted = bytearray(frame0)
    corrupted[flip % len(corrupted)] ^= 1 << bit
    decode(bytes(corrupted), [])


def test_a_frame_that_cannot_be_allocated_is_a_protocol_error() -> None:
    """Within the limits but past what the machine can give: that connection
    closes (a ``RemoteProtocolError``), the process does not."""

    def no_memory(size: int) -> bytearray:
        raise MemoryError

    decoder = FrameDecoder(alloc=no_memory)
    data = header([1 << 30]) + b"x" * 10
    buf = decoder.get_buffer()
    buf[: len(data)] = data
    del buf
    try:
        decoder.buffer_updated(len(data))
    except RemoteProtocolError as e:
        assert "no memory for a frame" in str(e)
    else:
        raise AssertionError("expected a RemoteProtocolError")
