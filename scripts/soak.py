"""Soak test: many tasks over a long time while workers are killed and
stopped at random; every result must be right and none missing.

    .venv/bin/python scripts/soak.py                      # 100k tasks over 10 minutes
    .venv/bin/python scripts/soak.py --duration 60 --tasks 10000   # a quick look

Every second a wave of tasks goes in: ``make(i)`` (a result too big to
travel inline, so it lives on one worker only and a kill loses it),
``use(make(i), i)`` and a per-wave ``total``.  Waves are checked five
seconds later (every ``use`` result and the total against the known
answer) and then released.  Meanwhile a chaos thread, every 4 to 12 s at
random, SIGKILLs a random worker (three times in four) or SIGSTOPs one for
longer than ``scheduler.worker-ttl`` and then SIGCONTs it.  The cluster's
nannies restart what dies.

Prints a summary and one JSON line; exits 1 if any result was wrong or
missing, or any task failed.  Not part of the test suite (docs/failures.md
has the figures of its last run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

PAD = 20_000


def make(i: int) -> tuple[int, bytes]:
    return i, b"\0" * PAD


def use(pair: tuple[int, bytes], i: int) -> int:
    assert len(pair[1]) == PAD and pair[0] == i
    return i * 3 + 1


def total(values: list[int]) -> int:
    return sum(values)


class Chaos(threading.Thread):
    """Kills or stops a random worker now and then, until told to stop."""

    def __init__(self, client: Any, seed: int, stop_for: float, interval: tuple[float, float]) -> None:
        super().__init__(daemon=True, name="soak-chaos")
        self.client = client
        self.rng = random.Random(seed)
        self.stop_for = stop_for
        self.interval = interval
        self.done = threading.Event()
        self.kills = 0
        self.stops = 0
        self.skipped = 0

    def run(self) -> None:
        while not self.done.wait(self.rng.uniform(*self.interval)):
            try:
                workers = self.client.scheduler_info()["workers"]
            except Exception:
                self.skipped += 1
                continue
            if len(workers) < 2:
                self.skipped += 1  # keep one worker at least: the cluster must go on
                continue
            address = self.rng.choice(sorted(workers))
            pid = workers[address]["pid"]
            try:
                if self.rng.random() < 0.75:
                    os.kill(pid, signal.SIGKILL)
                    self.kills += 1
                else:
                    os.kill(pid, signal.SIGSTOP)
                    self.stops += 1
                    self.done.wait(self.stop_for)
                    os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                self.skipped += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of submitting (600)")
    p.add_argument("--tasks", type=int, default=100_000, help="tasks in all (100000)")
    p.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ttl", default="3s", help="scheduler.worker-ttl and worker.scheduler-ttl (3s)")
    p.add_argument("--chaos-interval", default="4,12", help="seconds between events, min,max (4,12)")
    args = p.parse_args()

    import shoal
    from shoal import Client, LocalCluster
    from shoal.units import parse_timedelta

    waves = max(1, int(args.duration))
    per_wave = max(1, -(-(args.tasks - waves) // (2 * waves)))  # rounded up
    lo, hi = (float(x) for x in args.chaos_interval.split(","))
    ttl = parse_timedelta(args.ttl)
    with shoal.config.set({"scheduler.worker-ttl": args.ttl, "worker.scheduler-ttl": args.ttl,
                           "nanny.max-restarts": 1000}):
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1)
    client = Client(cluster)
    stop_for = ttl + 2.0
    chaos = Chaos(client, args.seed, stop_for, (lo, hi))
    pending: deque[tuple[int, list[Any], list[Any], Any]] = deque()
    checked = wrong = missing = failed = 0
    errors: list[str] = []
    submitted = 0

    def check(wave: int, xs: list[Any], ys: list[Any], tot: Any) -> None:
        nonlocal checked, wrong, missing, failed
        base = wave * per_wave
        expected = [(base + j) * 3 + 1 for j in range(per_wave)]
        try:
            shoal.wait([*ys, tot], timeout=300)
        except TimeoutError:
            missing += sum(not f.done() for f in [*ys, tot])
        for f, want in zip([*ys, tot], [*expected, sum(expected)]):
            if not f.done():
                continue
            try:
                got = f.result()
            except Exception as e:
                failed += 1
                if len(errors) < 10:
                    errors.append(f"{f.key}: {type(e).__name__}: {e}")
                continue
            checked += 1
            if got != want:
                wrong += 1
        checked += len(xs)  # each x was used by its y: a wrong x would show there

    start = time.monotonic()
    chaos.start()
    try:
        for wave in range(waves):
            tick = start + wave * args.duration / waves
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids = range(wave * per_wave, (wave + 1) * per_wave)
            xs = client.map(make, ids, pure=False)
            ys = client.map(use, xs, ids, pure=False)
            tot = client.submit(total, ys, pure=False)
            submitted += 2 * per_wave + 1
            pending.append((wave, xs, ys, tot))
            while pending and pending[0][0] <= wave - 5:
                check(*pending.popleft())
        while pending:
            check(*pending.popleft())
    finally:
        chaos.done.set()
        chaos.join()
    elapsed = time.monotonic() - start
    restarts = len(client.get_events("worker-restarted"))
    workers_end = len(client.scheduler_info()["workers"])
    client.close()
    cluster.close()
    result = {
        "tasks": submitted, "checked": checked, "wrong": wrong, "missing": missing,
        "failed": failed, "kills": chaos.kills, "stops": chaos.stops, "restarts_reported": restarts,
        "workers": args.workers, "workers_at_end": workers_end, "seconds": round(elapsed, 1),
        "errors": errors,
    }
    print(f"{submitted} tasks in {elapsed:.0f} s; {chaos.kills} workers killed, {chaos.stops} "
          f"stopped past the ttl; {restarts} restarts reported; {wrong} wrong, {missing} "
          f"missing, {failed} failed; {workers_end}/{args.workers} workers at the end")
    for e in errors:
        print("  ", e)
    print(json.dumps(result))
    return 0 if not (wrong or missing or failed) else 1


if __name__ == "__main__":
    sys.exit(main())
