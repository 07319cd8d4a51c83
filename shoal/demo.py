"""``shoal demo``: a local cluster running the seeds' workloads.

1. read-transform-write: one task per input file, results written to disk;
2. a flaky task made reliable with ``retries``;
3. an ``as_completed`` search that submits new work as results come in.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time


def process_file(path: str, out_dir: str) -> str:
    """Read numbers, transform them, write the result; return where it went."""
    with open(path) as f:
        numbers = [float(line) for line in f if line.strip()]
    transformed = sorted(x * x for x in numbers)
    destination = os.path.join(out_dir, os.path.basename(path) + ".out")
    with open(destination, "w") as f:
        f.write("\n".join(f"{x:.6f}" for x in transformed))
    return destination


def flaky_inc(i: int) -> int:
    if random.random() < 0.2:
        raise ValueError("You hit the error!")
    return i + 1


def rosenbrock(point: tuple[float, float]) -> tuple[tuple[float, float], float]:
    time.sleep(0.01)
    x, y = point
    return point, (1 - x) ** 2 + 2 * (y - x**2) ** 2


def _where_to_watch(client: object, token_dir: str) -> None:
    """Print the dashboard's address, and how another process connects (the
    cluster has a token of its own: it goes in a file only we can read)."""
    from shoal.security import write_token_file

    link = getattr(client, "dashboard_link", None)
    address = client.scheduler_address  # type: ignore[attr-defined]
    if link:
        print(f"  watch it live: {link}")
    token = client.cluster.security.token  # type: ignore[attr-defined]
    if token:
        path = write_token_file(os.path.join(token_dir, "token"), token)
        print(f"  another client: SHOAL_TOKEN_FILE={path} {sys.executable} -c "
              f"\"import shoal; c = shoal.Client('{address}'); print(c)\"")
    else:
        print(f"  another client: shoal.Client({address!r})")


def run_demo(n_workers: int | None = None, threads_per_worker: int | None = None,
             n_files: int = 40, linger: float = 0.0) -> int:
    from shoal import Client, as_completed

    t0 = time.perf_counter()
    with Client(n_workers=n_workers, threads_per_worker=threads_per_worker) as client, \
            tempfile.TemporaryDirectory(prefix="shoal-demo-token-") as token_dir:
        info = client.scheduler_info()
        print(f"shoal scheduler at {client.scheduler_address} with {len(info['workers'])} workers "
              f"({time.perf_counter() - t0:.2f} s to start)")
        _where_to_watch(client, token_dir)

        # 1. read-transform-write
        with tempfile.TemporaryDirectory(prefix="shoal-demo-") as tmp:
            in_dir, out_dir = os.path.join(tmp, "in"), os.path.join(tmp, "out")
            os.makedirs(in_dir)
            os.makedirs(out_dir)
            rng = random.Random(0)
            filenames = []
            for i in range(n_files):
                path = os.path.join(in_dir, f"part-{i:03d}.txt")
                with open(path, "w") as f:
                    f.write("\n".join(str(rng.uniform(-10, 10)) for _ in range(1000)))
                filenames.append(path)
            t = time.perf_counter()
            futures = [client.submit(process_file, fn, out_dir) for fn in filenames]
            written = client.gather(futures)
            assert all(os.path.exists(p) for p in written)
            print(f"1. read-transform-write: {len(written)} files in {time.perf_counter() - t:.2f} s")

        # 2. a flaky task, retried
        t = time.perf_counter()
        futures = client.map(flaky_inc, range(10), retries=10, pure=False)
        total = client.submit(sum, futures).result()
        print(f"2. flaky tasks with retries=10: sum = {total} (expected 55) "
              f"in {time.perf_counter() - t:.2f} s")

        # 3. as_completed search
        t = time.perf_counter()
        rng = random.Random(1)
        scale, best_point, best_score = 5.0, (0.0, 0.0), float("inf")
        start = [(rng.uniform(-scale, scale), rng.uniform(-scale, scale)) for _ in range(10)]
        iterator = as_completed([client.submit(rosenbrock, p) for p in start])
        evaluated = 0
        for future in iterator:
            point, score = future.result()
            evaluated += 1
            if score < best_score:
                best_score, best_point = score, point
            x, y = best_point
            iterator.add(client.submit(rosenbrock, (x + rng.uniform(-scale, scale),
                                                    y + rng.uniform(-scale, scale))))
            scale *= 0.99
            if scale < 0.05:
                break
        print(f"3. as_completed search: best score {best_score:.4g} at "
              f"({best_point[0]:.3f}, {best_point[1]:.3f}) after {evaluated} evaluations "
              f"in {time.perf_counter() - t:.2f} s")
        print(f"done in {time.perf_counter() - t0:.2f} s")
        if linger > 0:
            print(f"the cluster stays up {linger:g} s more (Ctrl-C to stop)")
            try:
                time.sleep(linger)
            except KeyboardInterrupt:
                pass
        else:
            print("(shoal demo --linger 60 keeps the cluster and its dashboard up afterwards)")
    return 0
