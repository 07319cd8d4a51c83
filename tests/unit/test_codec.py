"""Messages to frames and back, with payloads in and out of band."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from shoal.comm.codec import INLINE_PICKLE_MAX, MessageCodec
from shoal.errors import RemoteProtocolError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps, loads


def roundtrip(msgs: list) -> list:
    codec = MessageCodec()
    frames = codec.encode(msgs)
    return MessageCodec().decode([bytes(memoryview(f).cast("B")) for f in frames])


def test_messages_roundtrip() -> None:
    msgs = [m.ReleaseKeys(["a", "b"]), m.TaskFinished("k", 10, "int", 0.5, Payload(b"xyz")),
            m.Request(3, "who_has", {"keys": ["a"]})]
    out = roundtrip(msgs)
    assert out[0] == msgs[0] and out[2] == msgs[2]
    assert out[1].value == Payload(b"xyz") and out[1].key == "k"


def test_numpy_buffers_travel_as_their_own_frames() -> None:
    arr = np.arange(100_000, dtype="f8")
    codec = MessageCodec()
    frames = codec.encode([m.PutData(1, {"x": dumps(arr)})])
    assert len(frames) == 2  # msgpack + the array's buffer, not copied into frame 0
    assert memoryview(frames[1]).nbytes == arr.nbytes
    assert len(frames[0]) < 1000
    (msg,) = MessageCodec().decode([bytes(frames[0]), bytearray(frames[1])])
    back = loads(msg.data["x"])
    assert (back == arr).all()
    back[0] = 5  # rebuilt over a writable buffer
    assert back[0] == 5


def test_a_big_pickle_stream_gets_its_own_frame() -> None:
    big = [f"item-{i}" * 10 for i in range(INLINE_PICKLE_MAX // 50)]
    frames = MessageCodec().encode([m.PutData(1, {"x": dumps(big)})])
    assert len(frames) == 2
    (msg,) = roundtrip([m.PutData(1, {"x": dumps(big)})])
    assert loads(msg.data["x"]) == big


@pytest.mark.parametrize("garbage", [b"\x93\x01\x02", b"not msgpack", msgspec.msgpack.encode([["nope", 1]])])
def test_malformed_messages_raise_remote_protocol_error(garbage: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        MessageCodec().decode([garbage])


def test_payload_pointing_at_missing_frame_is_rejected() -> None:
    ext = msgspec.msgpack.Ext(2, (5).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    raw = msgspec.msgpack.encode([["put-data", 1, {"x": ext}]])
    with pytest.raises(RemoteProtocolError, match="frame"):
        MessageCodec().decode([raw])
