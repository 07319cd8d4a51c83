"""Quick bandwidth measurements on a worker: memory and disk
(``client.benchmark_hardware()``; the network part is a peer-to-peer echo,
``worker/observability.py``).

Each function measures a few sizes for a share of a fixed time budget and
answers ``{size label: bytes per second}`` (dask.distributed's layout).  Every
size runs at least once, so a size whose single operation takes longer than
its share overruns it: the sizes are chosen so that this stays small.
"""

from __future__ import annotations

import os
import tempfile
import time

from shoal.units import parse_bytes

MEMORY_SIZES = ("2 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB")
DISK_SIZES = ("1 kiB", "100 kiB", "1 MiB", "10 MiB")
NETWORK_SIZES = ("1 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB")


def benchmark_memory(duration: float, sizes: tuple[str, ...] = MEMORY_SIZES) -> dict[str, float]:
    """Copying bytes objects in memory, ``duration`` seconds in all."""
    share = duration / len(sizes)
    out = {}
    for label in sizes:
        size = parse_bytes(label)
        data = os.urandom(size)
        total = 0
        start = time.perf_counter()
        while True:
            copy = data[:-1]  # a new object: a real copy of size - 1 bytes
            del copy
            total += size
            elapsed = time.perf_counter() - start
            if elapsed >= share:
                break
        out[label] = total / elapsed
    return out


def benchmark_disk(directory: str | None, duration: float,
                   sizes: tuple[str, ...] = DISK_SIZES) -> dict[str, float]:
    """Appending to files with ``fsync`` in a temporary directory under
    ``directory`` (None: the system's), ``duration`` seconds in all."""
    share = duration / len(sizes)
    out = {}
    with tempfile.TemporaryDirectory(prefix="shoal-benchmark-", dir=directory) as tmp:
        for i, label in enumerate(sizes):
            size = parse_bytes(label)
            data = os.urandom(size)
            path = os.path.join(tmp, str(i))
            total = 0
            start = time.perf_counter()
            with open(path, "ab") as f:
                while True:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    total += size
                    elapsed = time.perf_counter() - start
                    if elapsed >= share:
                        break
            os.unlink(path)
            out[label] = total / elapsed
    return out
