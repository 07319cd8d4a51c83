"""The worker's memory: the pure policy, the disk store, the spill buffer and
the state machine's pause.  No processes here (tests/integration/test_memory.py
has those)."""

from __future__ import annotations

import os
import pickle
import threading

import numpy as np
import pytest

from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps, loads
from shoal.worker import state as ws
from shoal.worker.memory import MemoryPolicy, fraction
from shoal.worker.spill import LazyValue, SpillBuffer
from shoal.worker.storage import DiskStore

MB = 1_000_000

# ---------------------------------------------------------------- policy


def test_fraction_accepts_numbers_and_false_and_refuses_the_rest() -> None:
    assert fraction("target", 0.6) == 0.6
    assert fraction("pause", False) is None
    assert fraction("pause", None) is None
    for bad in (0, 1.5, -0.1, "0.6", True):
        with pytest.raises(ValueError, match=r"worker\.memory\.spill"):
            fraction("spill", bad)


def test_managed_memory_past_target_is_spilled_down_to_it() -> None:
    p = MemoryPolicy(1000 * MB)
    d = p.decide(process_memory=500 * MB, managed_in_memory=650 * MB, paused=False)
    assert d.spill == 50 * MB
    assert not d.paused and not d.changed


def test_process_memory_past_spill_spills_down_to_target_hysteresis() -> None:
    """Unmanaged memory counts: 710 MB of process memory with only 300 MB
    managed spills 110 MB, to bring the process back to the 600 MB target."""
    p = MemoryPolicy(1000 * MB)
    assert p.decide(710 * MB, 300 * MB, False).spill == 110 * MB
    # under the spill fraction: nothing, though above target
    assert p.decide(690 * MB, 300 * MB, False).spill == 0
    # never more than what is in memory
    assert p.decide(990 * MB, 50 * MB, False).spill == 50 * MB


def test_pause_and_resume_around_the_pause_fraction() -> None:
    p = MemoryPolicy(1000 * MB)
    d = p.decide(810 * MB, 0, False)
    assert d.paused and d.changed
    assert p.decide(810 * MB, 0, True).changed is False
    d = p.decide(790 * MB, 0, True)
    assert not d.paused and d.changed


def test_terminate_fraction_and_switching_steps_off() -> None:
    p = MemoryPolicy(1000 * MB)
    assert p.should_terminate(951 * MB) and not p.should_terminate(949 * MB)
    off = MemoryPolicy.from_settings(1000 * MB, {"target": False, "spill": False, "pause": False,
                                                 "terminate": False})
    assert not off.spills
    d = off.decide(999 * MB, 900 * MB, False)
    assert (d.spill, d.paused) == (0, False)
    assert not off.should_terminate(2000 * MB)
    # no limit: never anything
    assert MemoryPolicy(0).decide(10**12, 10**12, False).spill == 0
    assert not MemoryPolicy(0).should_terminate(10**12)


def test_spill_without_target_uses_spill_fraction_for_hysteresis() -> None:
    p = MemoryPolicy.from_settings(1000 * MB, {"target": False})
    assert p.target_bytes() is None
    assert p.decide(750 * MB, 500 * MB, False).spill == 50 * MB


# ---------------------------------------------------------------- disk store


def test_disk_store_round_trip_small_and_mapped(tmp_path: object) -> None:
    store = DiskStore(os.path.join(str(tmp_path), "s"), mmap_min_bytes=1 << 20)
    small = dumps({"a": bytearray(b"x" * 5000), "b": [1, 2, 3]})
    name, written = store.write(small)
    assert written >= small.nbytes
    back = store.read(name)
    assert loads(back) == {"a": bytearray(b"x" * 5000), "b": [1, 2, 3]}
    array = np.arange(1 << 20, dtype=np.float64)  # 8 MB: read back mapped
    name2, _ = store.write(dumps(array))
    payload = store.read(name2)
    assert all(memoryview(b).nbytes for b in payload.buffers)
    got = loads(payload)
    assert np.array_equal(got, array)
    assert got.ctypes.data % 64 == 0  # aligned in the file, so in the mapping
    got[0] = -1.0  # writable, copy-on-write: the file does not change
    assert loads(store.read(name2))[0] == 0.0
    store.remove(name2)
    assert loads(payload)[1] == 1.0  # a mapping outlives its file
    with pytest.raises(FileNotFoundError):
        store.read(name2)
    store.close()
    assert not os.path.exists(store.directory)


def test_disk_store_writes_many_buffers(tmp_path: object) -> None:
    store = DiskStore(str(tmp_path))
    parts = [bytearray(os.urandom(4096 + i)) for i in range(700)]  # more than one writev
    payload = Payload(pickle.dumps(len(parts)), parts)
    name, _ = store.write(payload)
    back = store.read(name)
    assert [bytes(b) for b in back.buffers] == [bytes(b) for b in parts]


# ---------------------------------------------------------------- spill buffer


def test_spill_buffer_evicts_least_recently_used_and_reads_back(tmp_path: object) -> None:
    spilled: list[str] = []
    buf = SpillBuffer(str(tmp_path), target=10 * MB, on_spilled=spilled.append)
    arrays = {f"x{i}": np.full(MB // 8, i, dtype=np.float64) for i in range(4)}
    for key, a in arrays.items():
        buf[key] = a
    assert buf.memory_bytes == sum(buf.weights.values()) > 4 * MB
    buf["x0"]  # now the most recently used
    freed = buf.evict(2 * MB)
    assert freed >= 2 * MB
    assert spilled == ["x1", "x2"]
    assert set(buf.disk) == {"x1", "x2"} and set(buf.memory) == {"x3", "x0"}
    assert buf.spilled_memory == freed and buf.spilled_disk >= 2 * MB
    assert set(buf) == set(arrays) and len(buf) == 4 and "x1" in buf
    # the serialized form for a peer, straight from the file: stays on disk
    assert np.array_equal(loads(buf.payload("x1")), arrays["x1"])
    assert "x1" in buf.disk
    # a reader brings it back to memory
    assert np.array_equal(buf["x1"], arrays["x1"])
    assert "x1" in buf.memory and "x1" not in buf.disk
    del buf["x2"]
    assert "x2" not in buf and buf.spilled_disk == 0 and buf.spilled_memory == 0
    assert os.listdir(os.path.join(str(tmp_path))) == []  # its file went
    assert buf.pop("nope", "default") == "default"
    # each move is remembered for the dashboard's task stream, in order
    moves = [(action, key) for _, action, key, _, _, _ in buf.events]
    assert moves == [("disk-write", "x1"), ("disk-write", "x2"), ("disk-read", "x1"), ("disk-read", "x1")]
    numbers = [e[0] for e in buf.events]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert all(start <= stop and nbytes >= MB for _, _, _, start, stop, nbytes in buf.events)
    buf.close()
    assert len(buf) == 0 and buf.memory_bytes == 0


def test_spill_buffer_lazy_values_spill_as_they_came(tmp_path: object) -> None:
    buf = SpillBuffer(str(tmp_path), target=100 * MB)
    payload = dumps(np.arange(1000))
    buf["lazy"] = LazyValue(payload)
    assert buf.weights["lazy"] == payload.nbytes
    assert buf.raw("lazy").payload is payload  # not unpickled by looking
    assert buf.evict_one() == payload.nbytes
    assert loads(buf.payload("lazy")).tolist() == list(range(1000))
    assert buf["lazy"].tolist() == list(range(1000))
    # read once: unpickled and kept as the object
    assert type(buf.raw("lazy")) is np.ndarray


def test_unpicklable_values_stay_and_do_not_stop_spilling(tmp_path: object) -> None:
    buf = SpillBuffer(str(tmp_path), target=1)
    lock = threading.Lock()
    buf.set("lock", lock, nbytes=1000)
    buf.set("data", b"y" * 5000)
    assert buf.evict(10**9) == buf.spilled_memory > 0
    assert "data" in buf.disk and buf.memory["lock"] is lock
    assert buf.unspillable == {"lock"}
    assert buf.evict_one() == 0  # nothing more can go, no retry of the lock


def test_no_directory_means_no_spilling_and_max_spill_is_honoured(tmp_path: object) -> None:
    assert SpillBuffer(None).evict(10**9) == 0
    buf = SpillBuffer(str(tmp_path), max_spill=10_000)
    buf["a"] = b"a" * 6000
    buf["b"] = b"b" * 6000
    assert buf.evict(10**9) > 0
    assert list(buf.disk) == ["a"] and "b" in buf.memory


def test_values_read_back_stay_on_disk_when_memory_is_full(tmp_path: object) -> None:
    """Bringing a value back past the target would only push another out
    (a task reading many spilled inputs would make the worker spill as fast
    as it reads): the reader gets it, disk keeps it."""
    buf = SpillBuffer(str(tmp_path), target=60_000)
    buf["big"] = b"z" * 50_000
    buf.evict_one()
    buf["other"] = b"o" * 20_000
    assert buf["big"] == b"z" * 50_000
    assert "big" in buf.disk and "big" not in buf.memory
    del buf["other"]
    assert buf["big"] == b"z" * 50_000
    assert "big" in buf.memory and not buf.disk


def test_replaced_while_spilling_keeps_the_new_value(tmp_path: object) -> None:
    """The key changes while its old value is being written: the new value
    stays in memory and the old file goes."""
    holder: dict[str, SpillBuffer] = {}

    class Sneaky:
        def __reduce__(self) -> object:
            holder["buf"]["k"] = "new"  # another thread would do this
            return (str, ("old",))

    buf = holder["buf"] = SpillBuffer(str(tmp_path))
    buf.set("k", Sneaky(), nbytes=100)
    # the old value's file is dropped; eviction goes on with the next
    # candidate, which is now the new value
    assert buf.evict_one() == buf.spilled_memory > 0
    assert len(os.listdir(str(tmp_path))) == 1
    assert buf["k"] == "new"


def test_concurrent_readers_and_evictions_lose_nothing(tmp_path: object) -> None:
    buf = SpillBuffer(str(tmp_path), target=10**9)
    expected = {f"k{i}": bytearray(os.urandom(8192)) for i in range(200)}
    for k, v in expected.items():
        buf[k] = v
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(3):
                for k, v in expected.items():
                    assert buf[k] == v
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for _ in range(50):
        buf.evict(100_000)
    for t in readers:
        t.join()
    assert not errors
    assert {k: buf[k] for k in expected} == expected
    assert buf.memory_bytes == sum(buf.weights.values())


# ---------------------------------------------------------------- the state machine pauses


def _execute(key: str) -> m.ExecuteTask:
    return m.ExecuteTask(key, b"f", Payload(b""), 0)


def test_paused_worker_starts_nothing_until_resumed() -> None:
    st = ws.WorkerState("tcp://w", 1, validate=True)
    st.set_paused(True)
    st.handle_scheduler([_execute("a"), _execute("b")])
    assert [i for i in st.instructions if type(i) is ws.Execute] == []
    assert st.tasks["a"].state is ws.READY
    st.set_paused(False)
    assert [i.key for i in st.instructions if type(i) is ws.Execute] == ["a"]


def test_paused_worker_fetches_nothing() -> None:
    st = ws.WorkerState("tcp://w", 1, validate=True)
    st.set_paused(True)
    dep = m.DependencyLocation("d", ["tcp://peer"], 10)
    st.handle_scheduler([m.ExecuteTask("t", b"f", Payload(b""), 0, [dep])])
    assert not [i for i in st.instructions if type(i) is ws.GatherDep]
    st.set_paused(False)
    assert [i.keys for i in st.instructions if type(i) is ws.GatherDep] == [["d"]]


def test_managed_target_leaves_room_for_unmanaged_memory() -> None:
    p = MemoryPolicy(1000 * MB)
    # 100 MB of interpreter and libraries: 500 MB of values keep the process at 600
    assert p.managed_target(process_memory=300 * MB, managed_in_memory=200 * MB) == 500 * MB
    assert p.managed_target(900 * MB, 0) == 0  # a leak: every value may go
    assert MemoryPolicy.from_settings(1000 * MB, {"spill": False}).managed_target(
        900 * MB, 0) == 600 * MB
    assert MemoryPolicy.from_settings(1000 * MB, {"target": False}).managed_target(
        900 * MB, 0) is None


# ---------------------------------------------------------------- measuring


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd is Linux-only")
def test_process_memory_counts_shared_memory_segments_in_full() -> None:
    """A memfd value never touched by this process is in no resident set,
    yet it is memory the process keeps alive: it counts at its full size."""
    from shoal.worker.memory_manager import process_memory, shared_file_bytes

    before_files = shared_file_bytes(os.getpid())
    before = process_memory()
    fd = os.memfd_create("shoal-test", os.MFD_CLOEXEC)
    try:
        block = b"z" * (1 << 20)
        for i in range(16):
            os.pwrite(fd, block, i << 20)  # 16 MiB of shared memory, not mapped here
        assert shared_file_bytes(os.getpid()) - before_files == 16 << 20
        assert process_memory() - before >= 15 << 20
        # the worker passes what it knows instead of scanning /proc
        assert process_memory(shared_bytes=0) < process_memory()
    finally:
        os.close(fd)
    assert shared_file_bytes(os.getpid()) == before_files


def test_memory_is_high_past_the_spill_fraction_or_without_it_the_pause_one() -> None:
    policy = MemoryPolicy(1000)
    assert not policy.process_memory_high(700) and policy.process_memory_high(701)
    no_spill = MemoryPolicy(1000, target=None, spill=None)
    assert not no_spill.process_memory_high(800) and no_spill.process_memory_high(801)
    assert not MemoryPolicy(0).process_memory_high(10**12)  # no limit
    assert not MemoryPolicy(1000, spill=None, pause=None).process_memory_high(999)
