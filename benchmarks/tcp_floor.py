#!/usr/bin/env python3
"""Loopback TCP floors for receiving a large array: into a buffer that was
written before (what the reference harness's ``floor_tcp_MBps`` measures)
and into fresh memory each time (what a real ``gather`` does: the array it
returns is new, and every page of it is faulted in by the receive).

    python benchmarks/tcp_floor.py [--mb 200] [--repeat 7]

No shoal, no dask: one process sends a numpy array with ``sendall``, the
other receives it with ``recv_into``; the medians of the repeats are printed
(decimal MB/s), with the first receive of each kind left out as a warm-up.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import time


def _receiver(port_q: mp.Queue, n: int, rounds: int, fresh: bool) -> None:
    import numpy as np

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = np.empty(n, dtype=np.uint8)
    buf[:] = 1  # touched: every page is mapped
    for _ in range(rounds):
        if fresh:
            buf = np.empty(n, dtype=np.uint8)
        view = memoryview(buf)
        got = 0
        while got < n:
            got += conn.recv_into(view[got:], n - got)
        del view
        conn.sendall(b"k")
    conn.close()
    srv.close()


def measure(n: int, rounds: int, fresh: bool) -> list[float]:
    import numpy as np

    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(q, n, rounds, fresh))
    proc.start()
    sock = socket.create_connection(("127.0.0.1", q.get(timeout=60)))
    data = memoryview(np.ones(n, dtype=np.uint8))
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        sock.sendall(data)
        sock.recv(1)
        rates.append(n / (time.perf_counter() - t) / 1e6)
    sock.close()
    proc.join(60)
    return rates[1:]  # the first one warms up both sides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    opts = ap.parse_args()
    n = int(opts.mb * 1e6)
    for fresh in (False, True):
        rates = measure(n, opts.repeat + 1, fresh)
        kind = "fresh memory each time" if fresh else "a buffer written before"
        print(f"loopback TCP, {opts.mb:g} MB into {kind}: median {statistics.median(rates):,.0f} MB/s "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f}, n={len(rates)})")


if __name__ == "__main__":
    main()
