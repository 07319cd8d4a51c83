"""The framing decoder: any split of the byte stream gives the same messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.comm.framing import LARGE_FRAME, FrameDecoder, encode_frames
from shoal.errors import LocalProtocolError, RemoteProtocolError


def feed(decoder: FrameDecoder, data: bytes, chunks: list[int]) -> list[list[bytes]]:
    """Push ``data`` through the decoder in pieces of the given sizes."""
    out = []
    view = memoryview(data)
    sizes = iter(chunks)
    while view.nbytes:
        buf = decoder.get_buffer()
        n = min(len(buf), view.nbytes, max(1, next(sizes, view.nbytes)))
        buf[:n] = view[:n]
        del buf
        view = view[n:]
        for frames in decoder.buffer_updated(n):
            out.append([bytes(f) for f in frames])
    return out


def wire(messages: list[list[bytes]]) -> bytes:
    return b"".join(b"".join(bytes(x) for x in encode_frames(list(m))) for m in messages)


# frame sizes, small and large (a large frame gets a buffer of its own)
sizes_st = st.lists(st.integers(0, 300) | st.integers(LARGE_FRAME, 3 * LARGE_FRAME), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(shapes=st.lists(sizes_st, min_size=1, max_size=5),
       chunks=st.lists(st.integers(1, 200_000), max_size=50))
def test_any_split_gives_the_same_messages(shapes: list[list[int]], chunks: list[int]) -> None:
    messages = [[bytes([(i + j) % 256]) * n for j, n in enumerate(shape)] for i, shape in enumerate(shapes)]
    assert feed(FrameDecoder(), wire(messages), chunks) == messages


def test_large_frame_is_read_into_its_own_writable_buffer() -> None:
    payload = bytes(range(256)) * 1000
    decoder = FrameDecoder()
    data = wire([[b"head", payload]])
    got = []
    view = memoryview(data)
    while view.nbytes:
        buf = decoder.get_buffer()
        n = min(len(buf), view.nbytes)
        buf[:n] = view[:n]
        del buf
        view = view[n:]
        got.extend(decoder.buffer_updated(n))
    (frames,) = got
    assert isinstance(frames[1], bytearray) and frames[1] == payload


def test_garbage_is_rejected_on_the_first_bytes() -> None:
    with pytest.raises(RemoteProtocolError, match="bad frame header"):
        feed(FrameDecoder(), b"GET / HTTP/1.1\r\n\r\n", [])


def test_frame_count_and_size_limits() -> None:
    with pytest.raises(RemoteProtocolError, match="frames"):
        feed(FrameDecoder(max_frames=2), wire([[b"a", b"b", b"c"]]), [])
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        feed(FrameDecoder(max_frame_bytes=10), wire([[b"x" * 11]]), [])


def test_zero_frames_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frames([])
