"""Same-host transfers through shared memory.

A large result (its out-of-band buffers total at least ``SHM_MIN_BYTES``) is
moved, right after its task ran and on the task's thread, into an anonymous
shared-memory file (``memfd``), and the stored value is rebuilt over a
private copy-on-write mapping of it: one memcpy, no extra memory.  A process
on the same host that asks for it (a peer worker, or a client) is sent where
the memory is (pid, fd, offsets) instead of the bytes, opens it through
``/proc/<pid>/fd/<fd>`` and maps it copy-on-write too: nothing is copied, and
writes on either side stay private, as with a copy.

Lifetime is the kernel's reference counting: the memory is freed when the
last process holding the file or a mapping of it lets go, so it follows the
normal release of keys (the worker drops its value and closes its fd when
the scheduler frees the key) and survives nothing: no files to clean up,
not even after ``kill -9``.

Fallback: if the file cannot be opened (another host, another pid namespace,
no permission, the key was freed meanwhile), the asker falls back to TCP.

Settings ``worker.shared-memory.enabled`` and ``worker.shared-memory.min-bytes``
(``SHOAL_SHM=off`` and ``SHOAL_SHM_MIN`` still work), read by ``configure()``
when a worker or client starts.
"""

from __future__ import annotations

import mmap
import os
import pickle
import sys
import uuid
from functools import lru_cache
from typing import Any

from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps

#: the settings' defaults, until ``configure()`` reads the configuration
SHM_MIN_BYTES = 4 * 1024 * 1024
ENABLED = hasattr(os, "memfd_create")
_ALIGN = 64


def configure() -> None:
    """Apply this process's configuration (at a worker's or client's start)."""
    global ENABLED, SHM_MIN_BYTES
    from shoal import config

    ENABLED = bool(config.get("worker.shared-memory.enabled")) and hasattr(os, "memfd_create")
    SHM_MIN_BYTES = config.size("worker.shared-memory.min-bytes")
    host_identity.cache_clear()


@lru_cache(maxsize=1)
def host_identity() -> str:
    """Same string <=> same kernel, same pid namespace, same user: then
    ``/proc/<pid>/fd`` of the other process means what it says."""
    if not ENABLED or sys.platform != "linux":
        return ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{pidns}/{os.getuid()}"


class SharedRecord:
    """What this process keeps for a value it holds in shared memory."""

    __slots__ = ("fd", "lengths", "name", "offsets", "pickled", "size")

    def __init__(self, fd: int, name: str, size: int, pickled: bytes, offsets: list[int],
                 lengths: list[int]) -> None:
        self.fd = fd
        self.name = name
        self.size = size
        self.pickled = pickled
        self.offsets = offsets
        self.lengths = lengths

    def describe(self) -> m.SharedData:
        return m.SharedData(os.getpid(), self.fd, self.name, self.size, self.pickled,
                            self.offsets, self.lengths)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _rebuild(pickled: bytes, mapping: Any, offsets: list[int], lengths: list[int]) -> Any:
    view = memoryview(mapping)
    buffers = [view[o : o + n] for o, n in zip(offsets, lengths)]
    return pickle.loads(pickled, buffers=buffers)


def share(value: Any) -> tuple[Any, SharedRecord] | None:
    """Move ``value``'s large buffers into shared memory: ``(the value rebuilt
    over it, its record)``, or None when it is not worth it or fails."""
    if not ENABLED:
        return None
    try:
        payload = dumps(value)
    except Exception:
        return None
    written = write_shared(payload)
    if written is None:
        return None
    record, mapping = written
    return _rebuild(record.pickled, mapping, record.offsets, record.lengths), record


def write_shared(payload: Payload) -> tuple[SharedRecord, Any] | None:
    """Copy a payload's out-of-band buffers into a new shared-memory file:
    ``(its record, a private mapping of it)``, or None when too small."""
    if not ENABLED:
        return None
    views = [memoryview(b).cast("B") for b in payload.buffers]
    total_big = sum(v.nbytes for v in views)
    if total_big < SHM_MIN_BYTES:
        return None
    offsets, lengths, size = [], [], 0
    for v in views:
        offsets.append(size)
        lengths.append(v.nbytes)
        size += -(-v.nbytes // _ALIGN) * _ALIGN
    name = f"shoal-{uuid.uuid4().hex}"
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(size, 1))
        for v, off in zip(views, offsets):
            done = 0
            while done < v.nbytes:
                done += os.pwrite(fd, v[done:], off + done)
        mapping = mmap.mmap(fd, max(size, 1), flags=mmap.MAP_PRIVATE)
    except Exception:
        os.close(fd)
        return None
    return SharedRecord(fd, name, size, bytes(payload.data), offsets, lengths), mapping


def attach(desc: m.SharedData) -> tuple[Payload, SharedRecord] | None:
    """Map another process's shared value: ``(a payload over our private
    mapping, a record that keeps the memory alive and lets us share it on)``,
    or None if it cannot be reached (fall back to TCP)."""
    path = f"/proc/{desc.pid}/fd/{desc.fd}"
    try:
        if desc.name not in os.readlink(path):  # the fd is still that file
            return None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < desc.size:
            raise OSError("shared file shorter than announced")
        mapping = mmap.mmap(fd, max(desc.size, 1), flags=mmap.MAP_PRIVATE,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        os.close(fd)
        return None
    view = memoryview(mapping)
    buffers = [view[o : o + n] for o, n in zip(desc.offsets, desc.lengths)]
    record = SharedRecord(fd, desc.name, desc.size, desc.pickled, list(desc.offsets), list(desc.lengths))
    return Payload(desc.pickled, buffers), record
