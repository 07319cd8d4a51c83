"""Spilling to disk: how fast, and work larger than memory end to end.

    python benchmarks/spill.py disk [--mb 1024] [--value-mb 16] [--rounds 3]
    python benchmarks/spill.py cluster [--workers 2] [--limit 1GB] [--factor 3] [--value-mb 16]

``disk``: the worker's spill path against the disk's plain speed, in the
same directory (``--dir``, default: the temporary directory workers spill
to), alternating A/B in each round:

* plain write: ``os.write`` of the same bytes to one file per value;
* spill write: ``SpillBuffer.evict`` of numpy arrays of ``--value-mb``
  (pickling with out-of-band buffers + ``DiskStore.write``);
* plain read: ``readinto`` a bytearray, then one pass over it (``sum``);
* spill read: ``SpillBuffer[key]`` (file mapped, array rebuilt over the
  mapping) and the same pass over the array.

Neither side calls ``fsync``: both measure the page cache, as a worker's
spilling does; reads are of files just written (warm cache).  The figures
are MB/s (1e6 bytes).

``cluster``: a LocalCluster whose workers have ``--limit`` each computes
results totalling ``--factor`` times the cluster's memory, checks each one
where it is (read back from disk), and reports the time, the bytes spilled,
each worker's peak memory and whether any worker restarted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

MB = 1_000_000


def _arrays(n: int, value_bytes: int) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.random(value_bytes // 8) for _ in range(n)]


def _plain_write(directory: str, arrays: list[Any]) -> float:
    start = time.perf_counter()
    for i, a in enumerate(arrays):
        fd = os.open(os.path.join(directory, f"plain-{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        view = memoryview(a).cast("B")
        done = 0
        while done < view.nbytes:
            done += os.write(fd, view[done:])
        os.close(fd)
    return time.perf_counter() - start


def _plain_read(directory: str, n: int) -> tuple[float, float]:
    import numpy as np

    start = time.perf_counter()
    total = 0.0
    for i in range(n):
        path = os.path.join(directory, f"plain-{i}")
        buf = bytearray(os.path.getsize(path))
        with open(path, "rb", buffering=0) as f:
            f.readinto(buf)
        total += float(np.frombuffer(buf, dtype=np.float64).sum())
    return time.perf_counter() - start, total


def _spill_write(buf: Any, arrays: list[Any]) -> float:
    for i, a in enumerate(arrays):
        buf[f"v{i}"] = a
    start = time.perf_counter()
    buf.evict(10**15)
    elapsed = time.perf_counter() - start
    assert len(buf.disk) == len(arrays), "not everything was spilled"
    return elapsed


def _spill_read(buf: Any, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    total = 0.0
    for i in range(n):
        total += float(buf[f"v{i}"].sum())
    return time.perf_counter() - start, total


def disk(args: argparse.Namespace) -> None:
    from shoal.worker.spill import SpillBuffer

    value_bytes = int(args.value_mb * MB)
    n = max(1, int(args.mb * MB) // value_bytes)
    nbytes = n * value_bytes
    arrays = _arrays(n, value_bytes)
    expected = float(sum(float(a.sum()) for a in arrays))
    base = args.dir or tempfile.gettempdir()
    results: dict[str, list[float]] = {k: [] for k in ("plain_write", "spill_write", "plain_read",
                                                       "spill_read")}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=base) as plain_dir, \
                tempfile.TemporaryDirectory(dir=base) as spill_dir:
            results["plain_write"].append(nbytes / _plain_write(plain_dir, arrays) / MB)
            # target=1: a read brings nothing back to memory (each read maps its file)
            buf = SpillBuffer(spill_dir, target=1)
            results["spill_write"].append(nbytes / _spill_write(buf, arrays) / MB)
            t, total = _plain_read(plain_dir, n)
            assert abs(total - expected) < 1e-6 * abs(expected)
            results["plain_read"].append(nbytes / t / MB)
            t, total = _spill_read(buf, n)
            assert abs(total - expected) < 1e-6 * abs(expected)
            results["spill_read"].append(nbytes / t / MB)
            buf.close()
    load = os.getloadavg()
    print(f"{n} values of {args.value_mb} MB ({nbytes / MB:.0f} MB) in {base}, "
          f"{args.rounds} rounds, load average {load[0]:.2f} {load[1]:.2f}")
    print(f"{'':12} {'median MB/s':>12} {'rounds':>30}")
    for name, values in results.items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:12} {statistics.median(values):12.0f} {rounds:>30}")
    print(f"spill/plain write {statistics.median(results['spill_write']) / statistics.median(results['plain_write']):.2f}, "
          f"read {statistics.median(results['spill_read']) / statistics.median(results['plain_read']):.2f}")


def _make(i: int, nbytes: int) -> Any:
    import numpy as np

    a = np.empty(nbytes // 8, dtype=np.float64)
    a[:] = i
    return a


def _check(a: Any, i: int) -> bool:
    return bool((a == i).all())


def cluster(args: argparse.Namespace) -> None:
    import shoal
    from shoal.units import parse_bytes

    limit = parse_bytes(args.limit)
    value_bytes = int(args.value_mb * MB)
    n = int(args.factor * args.workers * limit) // value_bytes
    with shoal.Client(n_workers=args.workers, threads_per_worker=1, memory_limit=limit) as c:
        pids = {a: w["pid"] for a, w in c.scheduler_info()["workers"].items()}
        start = time.perf_counter()
        futures = c.map(_make, range(n), [value_bytes] * n)
        shoal.wait(futures)
        computed = time.perf_counter() - start
        ok = all(c.gather(c.map(_check, futures, range(n))))
        checked = time.perf_counter() - start
        time.sleep(1.5)  # one heartbeat: the spilled bytes reach the scheduler
        info = c.scheduler_info()["workers"]
        peaks = c.run(lambda dask_worker: dask_worker.memory.peak_process_memory)
        restarted = {a: w["pid"] for a, w in info.items()} != pids
    spilled = sum(w["metrics"]["spilled_bytes"]["disk"] for w in info.values())
    print(f"{args.workers} workers x {limit / MB:.0f} MB, {n} results of {args.value_mb} MB "
          f"= {n * value_bytes / MB:.0f} MB ({args.factor}x the cluster's memory)")
    print(f"computed in {computed:.1f} s, all checked in {checked:.1f} s, correct: {ok}")
    print(f"spilled to disk at the end: {spilled / MB:.0f} MB; any worker restarted: {restarted}")
    for address, peak in peaks.items():
        print(f"  {address}: peak memory {peak / MB:.0f} MB ({100 * peak / limit:.0f}% of its limit)")
    if not ok or restarted:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("disk", help="spill write/read throughput against the disk's")
    d.add_argument("--mb", type=float, default=1024, help="bytes per round, MB")
    d.add_argument("--value-mb", type=float, default=16)
    d.add_argument("--rounds", type=int, default=3)
    d.add_argument("--dir", default=None)
    cl = sub.add_parser("cluster", help="results larger than the cluster's memory")
    cl.add_argument("--workers", type=int, default=2)
    cl.add_argument("--limit", default="1GB", help="memory limit per worker")
    cl.add_argument("--factor", type=float, default=3.0)
    cl.add_argument("--value-mb", type=float, default=16)
    args = parser.parse_args()
    disk(args) if args.mode == "disk" else cluster(args)


if __name__ == "__main__":
    main()
