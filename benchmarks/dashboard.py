"""What an open dashboard costs: ``map`` throughput of 200,000 tasks with the
dashboard closed, open in one browser tab, and open in three tabs.

    .venv/bin/python benchmarks/dashboard.py [--n 200000] [--rounds 3] [--out FILE]

One cluster (``Client(n_workers=2, threads_per_worker=1)``, the benchmarks'
usual one) serves every measurement; the modes alternate within each round
(rotated, so none always goes first):

* ``closed``: nobody looks (the dashboard's address is bound, no process runs);
* ``subscribers-3``: three websocket subscribers to every topic, reading the
  JSON and drawing nothing: the cost on the scheduler and the dashboard
  process alone, without a browser's rendering competing for the CPU;
* ``browser-1``: headless Chromium with the status page;
* ``browser-3``: three tabs: status, workers and task graph.

Each measurement submits ``n`` no-op tasks (``pure=False``: fresh keys),
waits for them all, and records tasks per second, the load average before, the scheduler's
CPU seconds, the share of the wall time the scheduler spent in its dashboard
feed's handlers (``DashboardFeed.busy_seconds``: the direct cost, free of
the noise of a shared machine), and the CPU seconds the dashboard process
and the browser used meanwhile.
The browsers and subscribers are opened before the clock starts and closed
after it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import tasks as T

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,900"]


class Browser:
    """Headless Chromium with ``pages`` open, one tab each."""

    def __init__(self, base: str, pages: list[str]) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="shoal-bench-chromium-")
        options = Options()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in [*FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        for i, page in enumerate(pages):
            if i:
                self.driver.switch_to.new_window("tab")
            self.driver.get(f"{base}/{page}")
        deadline = time.monotonic() + 30
        for handle in self.driver.window_handles:  # every tab live before the clock starts
            self.driver.switch_to.window(handle)
            while self.driver.execute_script(
                    "return document.getElementById('connection').textContent") != "live":
                if time.monotonic() > deadline:
                    raise TimeoutError("a dashboard tab did not go live")
                time.sleep(0.05)
        self.pid = self.driver.service.process.pid

    def cpu(self) -> float:
        return process_cpu(self.pid)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


class Subscribers:
    """``n`` websocket subscribers to every topic, in a process of their own
    (``--subscribe``), reading and decoding the JSON, drawing nothing."""

    def __init__(self, base: str, n: int) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--subscribe", base,
                                      "--n", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the subscribers did not connect")
        self.pid = self.proc.pid

    def cpu(self) -> float:
        return process_cpu(self.pid, children=False)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def subscribe(base: str, n: int) -> int:
    """Main of ``--subscribe``: until stdin closes."""
    import aiohttp

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, sys.stdin.read)
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(f"{base}/ws?topics=status,stream,logs,graph")
                       for _ in range(n)]
            print("ready", flush=True)

            async def read(ws: Any) -> None:
                async for msg in ws:
                    json.loads(msg.data)

            readers = [asyncio.ensure_future(read(ws)) for ws in sockets]
            await stop
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers, return_exceptions=True)

    asyncio.run(run())
    return 0


def process_cpu(pid: int, children: bool = True) -> float:
    """CPU seconds of a process (and its children) so far."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *(root.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def dashboard_cpu(client: Any) -> float:
    """CPU seconds of the dashboard process so far (0 before it started)."""
    proc = getattr(client.cluster._dashboard, "proc", None)
    if proc is None:
        return 0.0
    import psutil

    try:
        t = psutil.Process(proc.pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(t.user + t.system)


def feed_seconds(dask_scheduler: Any = None) -> float:
    """On the scheduler: seconds its dashboard feed's handlers ran, in all."""
    from shoal.scheduler.dashboard_feed import DashboardFeed

    return sum(e.busy_seconds for e in dask_scheduler.extensions if isinstance(e, DashboardFeed))


def measure(client: Any, n: int) -> float:
    from shoal import wait

    t0 = time.perf_counter()
    futures = client.map(T.noop, range(n), pure=False)
    wait(futures)
    elapsed = time.perf_counter() - t0
    del futures
    return n / elapsed


MODES = ["closed", "subscribers-3", "browser-1", "browser-3"]
PAGES = {"browser-1": ["status"], "browser-3": ["status", "workers", "graph"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--subscribe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.subscribe:
        return subscribe(args.subscribe, args.n)
    modes = args.modes.split(",")
    from shoal import Client

    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with Client(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as client:
        base = client.dashboard_link.rsplit("/status", 1)[0]
        scheduler_pid = client.run_on_scheduler(os.getpid)
        measure(client, 2000)  # warm up
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for mode in order:
                viewer: Any = None
                if mode.startswith("browser"):
                    viewer = Browser(base, PAGES[mode])
                elif mode.startswith("subscribers"):
                    viewer = Subscribers(base, int(mode.split("-")[1]))
                time.sleep(1.0)  # the pages' first draw done
                load = os.getloadavg()[0]
                s0, d0, b0 = (process_cpu(scheduler_pid, False), dashboard_cpu(client),
                              viewer.cpu() if viewer else 0.0)
                f0 = client.run_on_scheduler(feed_seconds)
                began = time.perf_counter()
                rate = measure(client, args.n)
                wall = time.perf_counter() - began
                f1 = client.run_on_scheduler(feed_seconds)
                s1, d1, b1 = (process_cpu(scheduler_pid, False), dashboard_cpu(client),
                              viewer.cpu() if viewer else 0.0)
                if viewer is not None:
                    viewer.close()
                row = {"tasks_per_s": rate, "load_before": load, "scheduler_cpu_s": s1 - s0,
                       "feed_share": (f1 - f0) / wall, "dashboard_cpu_s": d1 - d0,
                       "viewer_cpu_s": b1 - b0}
                results[mode].append(row)
                print(f"round {r + 1} {mode:14s} {rate:9.0f} tasks/s  load {load:4.1f}  "
                      f"scheduler cpu {s1 - s0:5.2f} s  feed {100 * (f1 - f0) / wall:5.2f} %  "
                      f"dashboard cpu {d1 - d0:5.2f} s  "
                      f"viewer cpu {b1 - b0:5.2f} s", flush=True)
    base_rate = statistics.median(x["tasks_per_s"] for x in results["closed"]) if "closed" in results else None
    base_cpu = statistics.median(x["scheduler_cpu_s"] for x in results["closed"]) if "closed" in results else None
    summary = {}
    for mode, rows in results.items():
        med = statistics.median(x["tasks_per_s"] for x in rows)
        cpu = statistics.median(x["scheduler_cpu_s"] for x in rows)
        summary[mode] = {"median_tasks_per_s": round(med), "ratio_to_closed":
                         round(med / base_rate, 4) if base_rate else None,
                         "median_scheduler_cpu_s": round(cpu, 3),
                         "scheduler_cpu_ratio_to_closed": round(cpu / base_cpu, 4) if base_cpu else None,
                         "median_viewer_cpu_s": round(statistics.median(x["viewer_cpu_s"] for x in rows), 3),
                         "median_feed_share": round(statistics.median(x["feed_share"] for x in rows), 5),
                         # each round's ratio to that round's closed run: drift in the
                         # machine's load between rounds cancels out
                         "median_paired_ratio": round(statistics.median(
                             x["tasks_per_s"] / c["tasks_per_s"] for x, c in zip(rows, results["closed"])),
                             4) if "closed" in results else None,
                         "runs": [{k: round(v, 3) for k, v in x.items()} for x in rows]}
    print("\nmode            median tasks/s  vs closed  paired  scheduler cpu s  vs closed  feed %  viewer cpu s")
    for mode, s in summary.items():
        print(f"{mode:14s} {s['median_tasks_per_s']:14,d}  {s['ratio_to_closed']:9}  "
              f"{s['median_paired_ratio']:6}  "
              f"{s['median_scheduler_cpu_s']:15}  {s['scheduler_cpu_ratio_to_closed']:9}  "
              f"{100 * s['median_feed_share']:6.2f}  {s['median_viewer_cpu_s']:12}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "rounds": args.rounds, "cores": os.cpu_count(),
                       "summary": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
