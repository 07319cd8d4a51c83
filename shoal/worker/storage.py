"""Serialized values in files: the disk half of the worker's spill buffer.

One file per value, named by a counter (never by the key, which may be any
string), in a directory of the worker's own.  A file holds one ``Payload``
exactly as the wire carries it: the pickle stream, then each out-of-band
buffer, 64-byte aligned::

    b"SHSP" u32 nbuffers u64 pickle_len u64 buffer_len*nbuffers
    pickle stream, padding, buffer 0, padding, buffer 1, ...

Rules:
1. Writing never copies a buffer: the frames go to the kernel by reference
   (``os.writev``), as they go to a socket.
2. Reading a value whose buffers total at least ``mmap_min_bytes`` maps the
   file (private, copy-on-write: the value stays writable and writes never
   reach the file) and rebuilds the buffers over the mapping: no copy, and
   the pages are file-backed, so the kernel can drop them under pressure.
   Smaller values are read into one bytearray: a mapping per small value
   would cost a page each and could exhaust the process's mappings.
3. No knowledge of keys, values or threads: the caller (``spill.py``) keeps
   which key is in which file.  Each call opens its own file descriptor, so
   calls from several threads need no lock beyond the counter's.
"""

from __future__ import annotations

import itertools
import mmap
import os
import shutil
import struct
from typing import Any

from shoal.protocol.serialize import Payload

_MAGIC = b"SHSP"
_HEAD = struct.Struct("<4sIQ")  # magic, number of buffers, pickle length
_LEN = struct.Struct("<Q")
_ALIGN = 64
_PAD = bytes(_ALIGN)
#: values whose out-of-band buffers total at least this are read back mapped
MMAP_MIN_BYTES = 1 << 20


class DiskStore:
    """Payloads written to and read from files under ``directory`` (made on
    the first write, removed by ``close()``)."""

    def __init__(self, directory: str, mmap_min_bytes: int = MMAP_MIN_BYTES) -> None:
        self.directory = directory
        self.mmap_min_bytes = mmap_min_bytes
        self._names = itertools.count()  # thread-safe in CPython: next() holds the GIL
        self._made = False

    def write(self, payload: Payload) -> tuple[str, int]:
        """Write ``payload`` to a new file: ``(its name, bytes written)``.
        Raises ``OSError`` (disk full...) with no file left behind."""
        if not self._made:
            os.makedirs(self.directory, exist_ok=True)
            self._made = True
        views = [memoryview(b).cast("B") for b in payload.buffers]
        data = memoryview(payload.data).cast("B")
        head = _HEAD.pack(_MAGIC, len(views), data.nbytes) + b"".join(
            _LEN.pack(v.nbytes) for v in views)
        parts: list[Any] = [head, data]
        offset = len(head) + data.nbytes
        for v in views:
            pad = -offset % _ALIGN
            if pad:
                parts.append(_PAD[:pad])
            parts.append(v)
            offset += pad + v.nbytes
        name = str(next(self._names))
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, parts)
        except BaseException:
            os.close(fd)
            _unlink(path)
            raise
        os.close(fd)
        return name, offset

    def read(self, name: str) -> Payload:
        """The payload in file ``name`` (``FileNotFoundError`` if removed)."""
        fd = os.open(os.path.join(self.directory, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, min(size, 4096), 0)
            magic, n, pickle_len = _HEAD.unpack_from(head)
            if magic != _MAGIC:
                raise OSError(f"spill file {name} is damaged (bad header)")
            end_head = _HEAD.size + n * _LEN.size
            if len(head) < end_head:
                head = os.pread(fd, end_head, 0)
            lengths = [_LEN.unpack_from(head, _HEAD.size + i * _LEN.size)[0] for i in range(n)]
            spans = []
            offset = end_head + pickle_len
            for length in lengths:
                offset += -offset % _ALIGN
                spans.append((offset, length))
                offset += length
            if offset > size:
                raise OSError(f"spill file {name} is shorter than its header says")
            if sum(lengths) >= self.mmap_min_bytes:
                # private and writable: a rebuilt array is writable, and its
                # writes stay in this process (copy-on-write)
                mapping = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE)
                whole = memoryview(mapping)
                data: bytes | memoryview = bytes(whole[end_head:end_head + pickle_len])
            else:
                buf = bytearray(size)
                got = os.preadv(fd, [buf], 0)
                if got != size:
                    raise OSError(f"spill file {name}: read {got} of {size} bytes")
                whole = memoryview(buf)
                data = whole[end_head:end_head + pickle_len]
            return Payload(data, [whole[o:o + n] for o, n in spans])
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        _unlink(os.path.join(self.directory, name))

    def close(self) -> None:
        """Remove every file (values mapped from them stay readable)."""
        if self._made:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._made = False


def _write_all(fd: int, parts: list[Any]) -> None:
    """``os.writev`` until everything is written (short writes resumed;
    at most IOV_MAX parts per call)."""
    pending = [memoryview(p).cast("B") for p in parts if len(p)]
    while pending:
        written = os.writev(fd, pending[:512])
        while written and pending:
            first = pending[0]
            if written >= first.nbytes:
                written -= first.nbytes
                pending.pop(0)
            else:
                pending[0] = first[written:]
                written = 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["MMAP_MIN_BYTES", "DiskStore"]
