"""Task functions the benchmarks run on the cluster.

They live in an importable module (the runner puts the repository root on
PYTHONPATH for the children and their clusters), so they are pickled by
reference for both implementations: the same bytes go over the wire for
shoal and for dask.  Only the standard library at module level; numpy and
psutil are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import time


def noop(x=None):
    return x


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def make_array(nbytes, seed):
    import numpy as np

    a = np.ones(nbytes // 8, dtype="f8")
    a[0] = seed
    return a


def consume_sum(a):
    return float(a.sum())


def gate(flag_path, timeout):
    """Runs until ``flag_path`` exists (or ``timeout`` seconds pass)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not os.path.exists(flag_path):
        time.sleep(0.02)
    return 0


# ---------------------------------------------------------------- shuffle
def shuffle_piece(i, j, nbytes):
    """The piece producer ``i`` makes for consumer ``j``."""
    return bytes([(i * 31 + j) % 251]) * nbytes


def shuffle_produce(i, n, nbytes):
    """Producer ``i``: one piece for each of the ``n`` consumers."""
    return [shuffle_piece(i, j, nbytes) for j in range(n)]


def shuffle_consume(j, *outputs):
    """Consumer ``j``: takes every producer's output and keeps its own piece."""
    total = 0
    check = 0
    for out in outputs:
        piece = out[j]
        total += len(piece)
        check = (check * 7 + piece[0]) % 1_000_003
    return total, check


def shuffle_expected(n, nbytes):
    out = []
    for j in range(n):
        check = 0
        for i in range(n):
            check = (check * 7 + (i * 31 + j) % 251) % 1_000_003
        out.append((n * nbytes, check))
    return out


# ---------------------------------------------------------------- actor
class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


# ------------------------------------------- run_on_scheduler helpers
def sched_pid(dask_scheduler=None):
    return os.getpid()


def sched_rss(dask_scheduler=None):
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


def sched_ntasks(dask_scheduler=None):
    """Tasks the scheduler holds, or -1 if it does not expose them."""
    tasks = getattr(dask_scheduler, "tasks", None)
    try:
        return len(tasks)
    except TypeError:
        return -1
