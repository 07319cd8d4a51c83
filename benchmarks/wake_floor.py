#!/usr/bin/env python3
"""What a sleeping receiver costs a message: one-byte ping-pong between two
processes over a Unix socket pair, with the receiver blocking in
``epoll_wait`` at once (its CPU may halt and must be woken) or polling for a
window first (``epoll_wait(0)`` and ``sched_yield`` in a loop, as shoal's
client and scheduler do after a message, see shoal/comm/spin.py).

    python benchmarks/wake_floor.py [--rounds 3000] [--gap-us 300] [--window-us 500]

The pinger pauses ``--gap-us`` between rounds, as a caller does between
submits.  Prints the median and 90th percentile round trip of each mode, and
their ratio.  No shoal, no dask.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import time


def _wait_readable(ep: select.epoll, window: float) -> None:
    if window:
        end = time.perf_counter() + window
        while time.perf_counter() < end:
            if ep.poll(0):
                return
            os.sched_yield()
    ep.poll()


def ping_pong(rounds: int, gap: float, window: float) -> list[float]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the ponger
        a.close()
        ep = select.epoll()
        ep.register(b.fileno(), select.EPOLLIN)
        for _ in range(rounds):
            _wait_readable(ep, window)
            b.recv(64)
            b.send(b"x")
        os._exit(0)
    b.close()
    ep = select.epoll()
    ep.register(a.fileno(), select.EPOLLIN)
    rtts = []
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            a.send(b"x")
            _wait_readable(ep, window)
            a.recv(64)
            rtts.append(time.perf_counter() - t)
            time.sleep(gap)
    finally:
        os.waitpid(pid, 0)
        a.close()
    return rtts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--gap-us", type=float, default=300)
    p.add_argument("--window-us", type=float, default=500)
    args = p.parse_args()
    if not hasattr(select, "epoll"):
        raise SystemExit("needs Linux (epoll)")
    medians = {}
    for name, window in (("sleeping receiver", 0.0), ("polling receiver", args.window_us * 1e-6)):
        rtts = sorted(ping_pong(args.rounds, args.gap_us * 1e-6, window))
        medians[name] = statistics.median(rtts)
        print(f"{name:18}  median {medians[name] * 1e6:7.1f} µs   p90 {rtts[int(len(rtts) * 0.9)] * 1e6:7.1f} µs")
    ratio = medians["sleeping receiver"] / medians["polling receiver"]
    print(f"a sleeping receiver costs {ratio:.2f} times as much per round trip")


if __name__ == "__main__":
    main()
