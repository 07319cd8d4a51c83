"""Content digests: the keys of scatter(hash=True) and of pure tasks."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.client.digest import PIECE, content_digest
from shoal.protocol.serialize import dumps

pytestmark = pytest.mark.timeout(60)


def test_equal_values_have_equal_digests_and_any_change_shows() -> None:
    a = np.arange(1000, dtype=np.float64)
    assert content_digest(dumps(a)) == content_digest(dumps(a.copy()))
    b = a.copy()
    b[500] += 1
    assert content_digest(dumps(a)) != content_digest(dumps(b))
    assert content_digest(dumps(a), b"f" * 16) != content_digest(dumps(a), b"g" * 16)
    assert len(content_digest(dumps(a))) == 32


def test_large_buffers_hashed_in_pieces_still_see_every_byte() -> None:
    n = (2 * PIECE + 12345) // 8  # past the threshold, with a short last piece
    a = np.random.default_rng(0).random(n)
    first = content_digest(dumps(a))
    assert content_digest(dumps(a.copy())) == first  # deterministic across threads
    for index in (0, PIECE // 8, n - 1):  # first piece, a later piece, the last byte
        b = a.copy()
        b[index] = -1.0
        assert content_digest(dumps(b)) != first
    # the same bytes in another shape are another value (the pickle differs)
    assert content_digest(dumps(a.reshape(-1, 1))) != first


def test_fortran_ordered_and_small_values() -> None:
    f = np.asfortranarray(np.arange(600.0).reshape(20, 30))
    assert content_digest(dumps(f)) == content_digest(dumps(f.copy(order="F")))
    assert content_digest(dumps(f)) != content_digest(dumps(np.ascontiguousarray(f)))
    assert content_digest(dumps(1)) != content_digest(dumps(2))
