"""A ``map`` over a million inputs: root tasks wait at the scheduler, so
worker memory stays flat while the scheduler holds the queue.

    python benchmarks/root_queue.py [--n 1000000] [--workers 2] [--interval 0.25]

Samples, while ``gather(map(inc, range(n)))`` runs: the scheduler's RSS,
each worker's RSS, the most tasks any worker was given at once (its
*processing* set: what was sent to it, not yet reported done) and the
length of the scheduler's queue.  Prints the peaks and the answer's check.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.tasks import inc

MB = 1_000_000


def _scheduler_view(dask_scheduler: Any) -> tuple[int, int, int]:
    state = dask_scheduler.state
    most = max((len(w.processing) for w in state.workers.values()), default=0)
    return most, len(state.queued), len(state.tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    import psutil

    import shoal

    with shoal.Client(n_workers=args.workers, threads_per_worker=1) as c:
        c.gather(c.map(inc, range(100)))
        scheduler = psutil.Process(c.run_on_scheduler(os.getpid))
        workers = [psutil.Process(w["pid"]) for w in c.scheduler_info()["workers"].values()]
        peaks = {"scheduler_rss": 0, "worker_rss": 0, "processing": 0, "queued": 0, "tasks": 0}
        start_worker_rss = max(p.memory_info().rss for p in workers)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(args.interval):
                try:
                    most, queued, tasks = c.run_on_scheduler(_scheduler_view)
                    values = {"scheduler_rss": scheduler.memory_info().rss,
                              "worker_rss": max(p.memory_info().rss for p in workers),
                              "processing": most, "queued": queued, "tasks": tasks}
                except Exception:
                    continue
                for k, v in values.items():
                    peaks[k] = max(peaks[k], v)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        futures = c.map(inc, range(args.n))
        total = sum(c.gather(futures))
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    expected = args.n * (args.n + 1) // 2
    print(f"map of {args.n} tasks on {args.workers} workers: {elapsed:.1f} s "
          f"({args.n / elapsed:.0f} tasks/s), answer correct: {total == expected}")
    print(f"peak scheduler RSS {peaks['scheduler_rss'] / MB:.0f} MB; peak worker RSS "
          f"{peaks['worker_rss'] / MB:.0f} MB (at start {start_worker_rss / MB:.0f} MB)")
    print(f"most tasks held by one worker at once: {peaks['processing']}; longest scheduler "
          f"queue: {peaks['queued']}; most tasks known to the scheduler: {peaks['tasks']}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
