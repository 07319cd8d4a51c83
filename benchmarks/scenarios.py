"""Scenario bodies.  Each runs in a fresh child process (see child.py) against a
fresh cluster: ``Client(n_workers=2, threads_per_worker=1, processes=True)``,
plus ``dashboard_address=None`` for dask.  shoal and dask go through exactly the
same code; only the module the client comes from differs.

A scenario fills a ``Result``: ``put(metric, value)`` for numbers,
``fail(metric, message)`` for a metric it could not measure.  An exception
escaping a scenario is recorded by the child as the scenario's error.
"""

from __future__ import annotations

import importlib
import os
import statistics
import tempfile
import threading
import time

from benchmarks import tasks as T

MB = 1e6  # MB/s are decimal megabytes per second
MODULES = {"shoal": "shoal", "dask": "dask.distributed"}
CLOSE_LIMIT = 60.0  # seconds a client.close() may take before we give up on it


class ScenarioTimeout(Exception):
    """The scenario's own deadline passed (the parent's hard timeout comes later)."""


class Result:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.extra: dict[str, object] = {}
        self.error: str | None = None
        self.traceback: str | None = None
        self.hard_exit = False  # the child must not run interpreter shutdown normally

    def put(self, name: str, value: float) -> None:
        self.metrics[name] = float(value)

    def fail(self, name: str, message: str) -> None:
        self.errors[name] = message

    def as_dict(self) -> dict[str, object]:
        return {"metrics": self.metrics, "errors": self.errors, "extra": self.extra,
                "error": self.error, "traceback": self.traceback}


def client_kwargs(impl: str) -> dict[str, object]:
    kw: dict[str, object] = dict(n_workers=2, threads_per_worker=1, processes=True)
    if impl == "dask":
        kw["dashboard_address"] = None  # dask-specific
    return kw


def pctl(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def kill_descendants() -> None:
    """Kill the processes this child started (by pid, children of this process only)."""
    try:
        import psutil

        procs = psutil.Process().children(recursive=True)
    except Exception:
        return
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


def close_with_limit(client: object, limit: float = CLOSE_LIMIT) -> tuple[float, str | None]:
    """Close in a thread so that a hanging close cannot hang the child."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            client.close()  # type: ignore[attr-defined]
        except BaseException as e:
            box["error"] = f"{type(e).__name__}: {e}"[:300]

    t = time.perf_counter()
    th = threading.Thread(target=run, name="bench-close", daemon=True)
    th.start()
    th.join(limit)
    dt = time.perf_counter() - t
    if th.is_alive():
        return dt, f"close() did not return within {limit:.0f}s"
    return dt, box.get("error")  # type: ignore[return-value]


class Cluster:
    """A fresh 2-worker cluster and a client for one scenario."""

    def __init__(self, impl: str, cfg: dict, res: Result, warmup: int = 50) -> None:
        self.impl, self.cfg, self.res, self.warmup = impl, cfg, res, warmup
        self.deadline = float(cfg.get("deadline") or time.time() + 1e9)
        self.skip_close = False

    def __enter__(self) -> Cluster:
        mod = importlib.import_module(MODULES[self.impl])
        self.wait = mod.wait
        self.client = mod.Client(**client_kwargs(self.impl))
        self.client.wait_for_workers(2)
        if self.warmup:
            self.client.gather(self.client.map(T.noop, range(self.warmup), pure=False))
        return self

    def __exit__(self, et: object, ev: object, tb: object) -> bool:
        if et is not None or self.skip_close:
            # state unknown (or a close known to hang): do not wait for a close
            kill_descendants()
            self.res.hard_exit = True
            self.res.extra["close_skipped"] = True
            return False
        dt, err = close_with_limit(self.client)
        self.res.extra["close_s"] = round(dt, 3)
        if err:
            self.res.extra["close_error"] = err
            kill_descendants()
            self.res.hard_exit = True
        return False

    def remaining(self) -> float:
        return self.deadline - time.time()

    def wait_all(self, futs: list, what: str = "tasks", since: float | None = None) -> None:
        """Wait for every future, up to the scenario's deadline; ``since`` is when
        the work was submitted (for the rate in the timeout message)."""
        t0 = time.perf_counter()
        since = t0 if since is None else since
        try:
            self.wait(futs, timeout=max(1.0, self.remaining()))
        except Exception as e:
            if "Timeout" not in type(e).__name__:
                raise
            done = sum(1 for f in futs if f.done())
            dt = time.perf_counter() - t0
            self.skip_close = True
            rate = done / (time.perf_counter() - since)
            raise ScenarioTimeout(
                f"timed out: {done} of {len(futs)} {what} done after {dt:.0f}s of waiting "
                f"(~{rate:,.0f}/s since submission)") from None

    def sched_pid(self) -> int:
        return int(self.client.run_on_scheduler(T.sched_pid))

    def cpu(self) -> dict[int, tuple[str, float]]:
        """CPU seconds so far of this process and its descendants, by pid."""
        import psutil

        me = psutil.Process()
        spid = getattr(self, "_spid", None)
        if spid is None:
            spid = self._spid = self.sched_pid()
        out = {}
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except Exception:
                continue
            if p.pid == me.pid:
                grp = "driver+scheduler" if spid == me.pid else "driver"
            else:
                grp = "scheduler" if p.pid == spid else "workers"
            out[p.pid] = (grp, t.user + t.system)
        return out

    @staticmethod
    def cpu_delta(a: dict, b: dict) -> dict[str, float]:
        groups: dict[str, float] = {}
        for pid, (grp, cpu) in b.items():
            groups[grp] = groups.get(grp, 0.0) + max(0.0, cpu - a.get(pid, (grp, 0.0))[1])
        return {k: round(v, 2) for k, v in sorted(groups.items())}


# ---------------------------------------------------------------- scenarios
def sc_startup(impl: str, cfg: dict, res: Result) -> None:
    t0 = time.perf_counter()
    mod = importlib.import_module(MODULES[impl])
    t1 = time.perf_counter()
    client = mod.Client(**client_kwargs(impl))
    assert client.submit(T.noop, 1, pure=False).result() == 1
    t2 = time.perf_counter()
    dt, err = close_with_limit(client)
    res.put("import_s", t1 - t0)
    res.put("first_result_s", t2 - t1)
    res.put("cold_start_s", t2 - t0)  # an import that defers work pays for it in Client()
    if err:
        res.fail("close_s", err)
        kill_descendants()
        res.hard_exit = True
    else:
        res.put("close_s", dt)


def sc_latency(impl: str, cfg: dict, res: Result) -> None:
    n = int(cfg["latency_n"])
    lat = []
    with Cluster(impl, cfg, res) as h:
        c = h.client
        for i in range(n):
            t = time.perf_counter_ns()
            c.submit(T.noop, i, pure=False).result()
            lat.append((time.perf_counter_ns() - t) / 1e3)
            if i % 64 == 0 and h.remaining() < 0:
                raise ScenarioTimeout(f"timed out after {i} of {n} round trips")
    res.put("median_us", statistics.median(lat))
    res.put("p99_us", pctl(lat, 0.99))
    res.extra.update(n=n, mean_us=round(statistics.fmean(lat), 1), max_us=round(max(lat), 1))


def _map(impl: str, cfg: dict, res: Result, n: int) -> None:
    with Cluster(impl, cfg, res) as h:
        c = h.client
        c0 = h.cpu()
        t0 = time.perf_counter()
        futs = c.map(T.noop, range(n), pure=False)
        t_sub = time.perf_counter()
        h.wait_all(futs, since=t0)
        out = c.gather(futs)
        t1 = time.perf_counter()
        res.extra["cpu_s"] = h.cpu_delta(c0, h.cpu())
        assert len(out) == n and out[-1] == n - 1, "wrong results"
        del out, futs
    res.put("tasks_per_s", n / (t1 - t0))
    res.extra.update(n=n, wall_s=round(t1 - t0, 3), submit_s=round(t_sub - t0, 3))


def sc_map(impl: str, cfg: dict, res: Result) -> None:
    _map(impl, cfg, res, int(cfg["map_n"]))


def sc_map_large(impl: str, cfg: dict, res: Result) -> None:
    _map(impl, cfg, res, int(cfg["map_large_n"]))


def sc_chain(impl: str, cfg: dict, res: Result) -> None:
    n = int(cfg["chain_n"])
    with Cluster(impl, cfg, res) as h:
        c = h.client
        c0 = h.cpu()
        t0 = time.perf_counter()
        f = c.submit(T.inc, 0, pure=False)
        for _ in range(n - 1):
            f = c.submit(T.inc, f, pure=False)
        t_sub = time.perf_counter()
        h.wait_all([f], "final task")
        out = f.result()
        t1 = time.perf_counter()
        res.extra["cpu_s"] = h.cpu_delta(c0, h.cpu())
        assert out == n, f"chain returned {out!r}, expected {n}"
    res.put("tasks_per_s", n / (t1 - t0))
    res.extra.update(n=n, wall_s=round(t1 - t0, 3), submit_s=round(t_sub - t0, 3))


def sc_tree(impl: str, cfg: dict, res: Result) -> None:
    leaves = int(cfg["tree_leaves"])
    with Cluster(impl, cfg, res) as h:
        c = h.client
        c0 = h.cpu()
        t0 = time.perf_counter()
        level = c.map(T.noop, range(leaves), pure=False)
        ntasks = leaves
        while len(level) > 1:
            nxt = [c.submit(T.add, level[i], level[i + 1], pure=False)
                   for i in range(0, len(level) - 1, 2)]
            ntasks += len(nxt)
            level = nxt + (level[-1:] if len(level) % 2 else [])
        t_sub = time.perf_counter()
        h.wait_all(level, "final task")
        out = level[0].result()
        t1 = time.perf_counter()
        res.extra["cpu_s"] = h.cpu_delta(c0, h.cpu())
        assert out == leaves * (leaves - 1) // 2, f"tree returned {out!r}"
    res.put("tasks_per_s", ntasks / (t1 - t0))
    res.extra.update(leaves=leaves, tasks=ntasks, wall_s=round(t1 - t0, 3),
                     submit_s=round(t_sub - t0, 3))


def sc_shuffle(impl: str, cfg: dict, res: Result) -> None:
    """N producers each make N pieces; consumer j takes all N producer outputs
    (N dependencies each, N*N edges in all) and keeps piece j."""
    n = int(cfg["shuffle_n"])
    nbytes = int(cfg["shuffle_part_bytes"])
    with Cluster(impl, cfg, res) as h:
        c = h.client
        c0 = h.cpu()
        t0 = time.perf_counter()
        producers = c.map(T.shuffle_produce, range(n), [n] * n, [nbytes] * n, pure=False)
        consumers = [c.submit(T.shuffle_consume, j, *producers, pure=False) for j in range(n)]
        t_sub = time.perf_counter()
        h.wait_all(consumers, "consumers")
        out = c.gather(consumers)
        t1 = time.perf_counter()
        res.extra["cpu_s"] = h.cpu_delta(c0, h.cpu())
        assert out == T.shuffle_expected(n, nbytes), "wrong shuffle results"
        del producers, consumers
    res.put("wall_s", t1 - t0)
    res.put("edges_per_s", n * n / (t1 - t0))
    res.extra.update(n=n, piece_bytes=nbytes, tasks=2 * n, edges=n * n,
                     MB_total=round(n * n * nbytes / MB, 2), submit_s=round(t_sub - t0, 3))


def sc_scatter_gather(impl: str, cfg: dict, res: Result) -> None:
    import numpy as np

    arr = np.random.default_rng(0).random(int(cfg["array_mb"] * MB) // 8)
    mb = arr.nbytes / MB
    res.extra["array_MB"] = mb
    t = time.perf_counter()
    float(arr.sum())  # the same read on an array already in this process
    t_sum = time.perf_counter() - t
    with Cluster(impl, cfg, res) as h:
        c = h.client
        c.gather(c.scatter(np.ones(1000), hash=False))  # warm the scatter path
        t0 = time.perf_counter()
        fut = c.scatter(arr, hash=False)
        t1 = time.perf_counter()
        back = c.gather(fut)
        t2 = time.perf_counter()
        float(back.sum())  # a zero-copy gather pays for its pages here
        t3 = time.perf_counter()
        assert np.array_equal(back, arr), "the gathered array differs from the scattered one"
        del back, fut
        res.put("scatter_MBps", mb / (t1 - t0))
        res.put("gather_MBps", mb / (t2 - t1))
        res.put("gather_read_MBps", mb / (t3 - t1))
        res.extra.update(scatter_s=round(t1 - t0, 4), gather_s=round(t2 - t1, 4),
                         read_s=round(t3 - t2, 4), driver_sum_s=round(t_sum, 4))
        time.sleep(0.5)
        try:
            t0 = time.perf_counter()
            fut = c.scatter(arr, hash=False, direct=True)
            t1 = time.perf_counter()
            back = c.gather(fut, direct=True)
            t2 = time.perf_counter()
            assert np.array_equal(back, arr), "the gathered array differs (direct=True)"
            del back, fut
            res.put("scatter_direct_MBps", mb / (t1 - t0))
            res.put("gather_direct_MBps", mb / (t2 - t1))
        except Exception as e:
            msg = f"{type(e).__name__}: {e}"[:300]
            res.fail("scatter_direct_MBps", msg)
            res.fail("gather_direct_MBps", msg)


def sc_worker_to_worker(impl: str, cfg: dict, res: Result) -> None:
    import numpy as np

    nbytes = int(cfg["array_mb"] * MB)
    mb = (nbytes // 8) * 8 / MB
    res.extra["array_MB"] = mb
    with Cluster(impl, cfg, res) as h:
        c = h.client
        workers = sorted(c.scheduler_info()["workers"])
        a, b = workers[0], workers[1]
        kw = dict(pure=False, allow_other_workers=False)
        fa = c.submit(T.make_array, nbytes, 7, workers=[a], **kw)
        h.wait_all([fa], "producer")
        # warm the consumer function on both workers
        c.gather([c.submit(T.consume_sum, np.ones(10), workers=[w], **kw) for w in (a, b)])
        t0 = time.perf_counter()
        c.submit(T.consume_sum, fa, workers=[a], **kw).result()
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        fb = c.submit(T.consume_sum, fa, workers=[b], **kw)
        s = fb.result()
        t_remote = time.perf_counter() - t0
        expect = (nbytes // 8) - 1 + 7
        assert s == expect, f"consumer returned {s!r}, expected {expect}"
        who = c.who_has([fa, fb])
        res.extra["who_has"] = {k[:40]: list(v) for k, v in who.items()}
        if b not in who.get(fb.key, [b]):
            res.extra["warning"] = "the consumer did not run on the worker it was pinned to"
    res.put("MBps", mb / t_remote)
    if t_remote > t_local:
        res.put("net_MBps", mb / (t_remote - t_local))
    res.extra.update(t_remote_s=round(t_remote, 4), t_local_s=round(t_local, 4))


def _poll(fn: object, timeout: float) -> tuple[bool, object]:
    """Call fn() in a thread; (answered, value).  A blocked event loop cannot hang us."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["v"] = fn()  # type: ignore[operator]
        except BaseException as e:
            box["e"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(max(0.1, timeout))
    if th.is_alive():
        return False, None
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    return True, box["v"]


def sc_waiting(impl: str, cfg: dict, res: Result) -> None:
    n = int(cfg["waiting_n"])
    cancel_wait = float(cfg["cancel_wait"])
    fd, flag = tempfile.mkstemp(prefix="shoal-bench-gate-")
    os.close(fd)
    os.unlink(flag)
    try:
        with Cluster(impl, cfg, res) as h:
            c = h.client
            g = c.submit(T.gate, flag, 600, pure=False)
            spid = h.sched_pid()
            res.extra["scheduler_is_driver"] = spid == os.getpid()
            time.sleep(0.5)
            rss0 = c.run_on_scheduler(T.sched_rss)
            t0 = time.perf_counter()
            futs = c.map(T.add, [g] * n, range(n), pure=False)
            t_sub = time.perf_counter()
            if c.run_on_scheduler(T.sched_ntasks) < 0:
                prev, stable = -1, 0  # no task count: wait for the RSS to settle
                while stable < 3 and h.remaining() > 0:
                    time.sleep(0.5)
                    cur = c.run_on_scheduler(T.sched_rss)
                    stable = stable + 1 if prev > 0 and abs(cur - prev) < 0.01 * prev else 0
                    prev = cur
                res.extra["registration"] = "RSS settled (no task count)"
            else:
                while c.run_on_scheduler(T.sched_ntasks) < n + 1:
                    if h.remaining() < 0:
                        h.skip_close = True
                        raise ScenarioTimeout("the scheduler did not register all tasks in time")
                    time.sleep(0.1)
            t_reg = time.perf_counter()
            time.sleep(0.5)
            rss1 = c.run_on_scheduler(T.sched_rss)
            res.put("bytes_per_task", (rss1 - rss0) / n)
            res.extra.update(n=n, scheduler_rss0_MB=round(rss0 / MB, 1),
                             scheduler_rss1_MB=round(rss1 / MB, 1),
                             submit_s=round(t_sub - t0, 3), registered_s=round(t_reg - t0, 3))
            # cancel everything; time until the scheduler holds no task at all
            t = time.perf_counter()
            c.cancel([*futs, g])
            res.extra["cancel_call_s"] = round(time.perf_counter() - t, 3)
            open(flag, "w").close()  # the gate task may be running: let it end
            deadline = t + cancel_wait
            left = None
            while True:
                ok, left = _poll(lambda: c.run_on_scheduler(T.sched_ntasks),
                                 deadline - time.perf_counter())
                if ok and left is not None and left <= 0:
                    res.put("cancel_s", time.perf_counter() - t)
                    break
                if not ok or time.perf_counter() > deadline:
                    state = (f"{left} of {n + 1} tasks still on the scheduler" if ok
                             else "the scheduler did not answer (event loop blocked)")
                    res.fail("cancel_s", f"not done after {cancel_wait:g}s: {state}")
                    h.skip_close = True  # close would hang on the same work
                    break
                time.sleep(0.05)
            del futs, g
    finally:
        if os.path.exists(flag):
            os.unlink(flag)


class RssSampler(threading.Thread):
    """Peak RSS of some processes, sampled from this process."""

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        super().__init__(name="bench-rss", daemon=True)
        import psutil

        self.procs = {k: psutil.Process(p) for k, p in pids.items()}
        self.peak = {k: 0 for k in pids}
        self.interval = interval
        self.samples = 0
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            for k, p in self.procs.items():
                try:
                    self.peak[k] = max(self.peak[k], p.memory_info().rss)
                except Exception:
                    pass
            self.samples += 1
            self._stop_ev.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop_ev.set()
        self.join(5)
        return {k: v / MB for k, v in self.peak.items()}


def sc_map_1m(impl: str, cfg: dict, res: Result) -> None:
    n = int(cfg["map_1m_n"])
    with Cluster(impl, cfg, res) as h:
        c = h.client
        spid = h.sched_pid()
        separate = spid != os.getpid()
        pids = {"scheduler": spid, **({"driver": os.getpid()} if separate else {})}
        sampler = RssSampler(pids, float(cfg.get("rss_interval", 0.05)))
        sampler.start()
        start = {k: round(p.memory_info().rss / MB, 1) for k, p in sampler.procs.items()}
        res.extra.update(n=n, scheduler_is_driver=not separate, rss_start_MB=start)
        c0 = h.cpu()
        t0 = time.perf_counter()
        try:
            futs = c.map(T.noop, range(n), pure=False)
            t_sub = time.perf_counter()
            res.extra["submit_s"] = round(t_sub - t0, 3)
            h.wait_all(futs, since=t0)
            out = c.gather(futs)
            t1 = time.perf_counter()
        except ScenarioTimeout as e:
            peak = sampler.stop()
            raise ScenarioTimeout(
                f"{e}; peak RSS so far: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in peak.items())
            ) from None
        peak = sampler.stop()
        res.extra["cpu_s"] = h.cpu_delta(c0, h.cpu())
        res.extra["rss_samples"] = sampler.samples
        assert len(out) == n and out[-1] == n - 1, "wrong results"
        del out, futs
    res.put("tasks_per_s", n / (t1 - t0))
    res.put("wall_s", t1 - t0)
    res.put("scheduler_peak_rss_MB", peak["scheduler"])
    if separate:
        res.put("driver_peak_rss_MB", peak["driver"])


def sc_actor(impl: str, cfg: dict, res: Result) -> None:
    n = int(cfg["actor_n"])
    lat = []
    with Cluster(impl, cfg, res) as h:
        counter = h.client.submit(T.Counter, actor=True).result()
        res.extra["handle_type"] = f"{type(counter).__module__}.{type(counter).__qualname__}"
        if isinstance(counter, T.Counter):
            raise RuntimeError(
                "submit(Counter, actor=True).result() returned a plain Counter object "
                "(a copy of the instance), not an actor handle")
        for _ in range(50):
            counter.increment().result()
        for i in range(n):
            t = time.perf_counter_ns()
            counter.increment().result()
            lat.append((time.perf_counter_ns() - t) / 1e3)
            if i % 64 == 0 and h.remaining() < 0:
                raise ScenarioTimeout(f"timed out after {i} of {n} calls")
        final = counter.increment().result()
        assert final == n + 51, f"the counter says {final!r}, expected {n + 51}"
        del counter
    res.put("median_us", statistics.median(lat))
    res.put("p99_us", pctl(lat, 0.99))
    res.extra.update(n=n, mean_us=round(statistics.fmean(lat), 1))


SCENARIO_FUNCS = {
    "startup": sc_startup,
    "latency": sc_latency,
    "map": sc_map,
    "map_large": sc_map_large,
    "chain": sc_chain,
    "tree": sc_tree,
    "shuffle": sc_shuffle,
    "scatter_gather": sc_scatter_gather,
    "worker_to_worker": sc_worker_to_worker,
    "waiting": sc_waiting,
    "map_1m": sc_map_1m,
    "actor": sc_actor,
}
