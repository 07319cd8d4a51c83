"""Shared memory for same-host transfers (shoal/worker/shm.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads
from shoal.worker import shm

pytestmark = pytest.mark.skipif(not shm.ENABLED or not shm.host_identity(), reason="no memfd here")

BIG = shm.SHM_MIN_BYTES // 8 + 1000


def test_a_large_value_moves_into_shared_memory_unchanged() -> None:
    arr = np.arange(BIG, dtype="f8")
    moved = shm.share(arr)
    assert moved is not None
    value, record = moved
    assert (value == arr).all() and value.flags.writeable
    value[0] = -1  # our own copy-on-write mapping: the shared file is untouched
    payload, other = shm.attach(record.describe())  # type: ignore[misc]
    assert loads(payload)[0] == 0
    record.close()
    other.close()


def test_small_values_stay_where_they_are() -> None:
    assert shm.share(np.ones(10)) is None
    assert shm.share({"a": 1}) is None


def test_an_attached_value_is_private_to_the_process_that_writes_it() -> None:
    record, _ = shm.write_shared(dumps(np.zeros(BIG)))  # type: ignore[misc]
    first, r1 = shm.attach(record.describe())  # type: ignore[misc]
    second, r2 = shm.attach(record.describe())  # type: ignore[misc]
    a, b = loads(first), loads(second)
    a[:10] = 7
    assert b[:10].sum() == 0 and a[:10].sum() == 70
    for r in (record, r1, r2):
        r.close()


def test_a_descriptor_that_points_nowhere_means_fall_back() -> None:
    record, _ = shm.write_shared(dumps(np.zeros(BIG)))  # type: ignore[misc]
    desc = record.describe()
    record.close()  # the key was freed meanwhile: the fd is gone
    assert shm.attach(desc) is None
    wrong = m.SharedData(os.getpid(), 0, desc.name, desc.size, desc.pickled, desc.offsets, desc.lengths)
    assert shm.attach(wrong) is None  # fd 0 is not that file
    assert shm.attach(m.SharedData(2**22 + 12345, 3, "x", 1, b"", [], [])) is None  # no such process
