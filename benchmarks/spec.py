"""What the benchmark suite measures: scenarios, their metrics and their sizes.

Only the standard library is imported here: the parent process (the runner)
never imports shoal, dask or numpy, so that each child measures a fresh
interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMPLS = ("shoal", "dask")


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    optional: bool = False  # may be missing without that being an error
    label: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    metrics: tuple[Metric, ...]
    sizes: tuple[str, ...] = ()  # config keys that size this scenario
    timeout: float = 300.0  # default per-child wall-clock limit, seconds
    notes: str = field(default="", compare=False)


def M(name: str, unit: str, hib: bool, optional: bool = False, label: str = "") -> Metric:
    return Metric(name, unit, hib, optional, label or name)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("startup", "startup: import / start 2-worker cluster to first result / close", (
        M("import_s", "s", False, label="import"),
        M("first_result_s", "s", False, label="start to first result"),
        M("cold_start_s", "s", False, label="import + start to first result"),
        M("close_s", "s", False, label="close"),
    )),
    Scenario("latency", "submit→result round trip", (
        M("median_us", "µs", False, label="median"),
        M("p99_us", "µs", False, label="p99"),
    ), sizes=("latency_n",)),
    Scenario("map", "map of no-op tasks", (
        M("tasks_per_s", "tasks/s", True, label="throughput"),
    ), sizes=("map_n",)),
    Scenario("map_large", "map of no-op tasks (large)", (
        M("tasks_per_s", "tasks/s", True, label="throughput"),
    ), sizes=("map_large_n",), timeout=600.0),
    Scenario("chain", "dependency chain (inc(inc(...)))", (
        M("tasks_per_s", "tasks/s", True, label="throughput"),
    ), sizes=("chain_n",)),
    Scenario("tree", "tree reduction (pairwise add)", (
        M("tasks_per_s", "tasks/s", True, label="throughput"),
    ), sizes=("tree_leaves",)),
    Scenario("shuffle", "all-to-all shuffle: N producers x N consumers", (
        M("wall_s", "s", False, label="wall"),
        M("edges_per_s", "deps/s", True, label="dependency edges"),
    ), sizes=("shuffle_n", "shuffle_part_bytes")),
    Scenario("scatter_gather", "scatter + gather of a numpy array", (
        M("scatter_MBps", "MB/s", True, label="scatter"),
        M("gather_MBps", "MB/s", True, label="gather"),
        M("gather_read_MBps", "MB/s", True, label="gather, then read it all (sum)"),
        M("scatter_direct_MBps", "MB/s", True, optional=True, label="scatter direct=True"),
        M("gather_direct_MBps", "MB/s", True, optional=True, label="gather direct=True"),
    ), sizes=("array_mb",)),
    Scenario("worker_to_worker", "worker→worker transfer of a numpy array", (
        M("MBps", "MB/s", True, label="transfer + consume"),
        M("net_MBps", "MB/s", True, optional=True, label="net of consume time"),
    ), sizes=("array_mb",)),
    Scenario("waiting", "tasks waiting on one gate task: scheduler memory, cancel", (
        M("bytes_per_task", "B/task", False, label="scheduler RSS per waiting task"),
        M("cancel_s", "s", False, label="cancel all until scheduler is empty"),
    ), sizes=("waiting_n",), timeout=400.0),
    Scenario("map_1m", "huge map end to end, scheduler peak RSS", (
        M("tasks_per_s", "tasks/s", True, label="throughput (submit to last result)"),
        M("wall_s", "s", False, label="wall"),
        M("scheduler_peak_rss_MB", "MB", False, label="scheduler peak RSS"),
        M("driver_peak_rss_MB", "MB", False, optional=True, label="driver peak RSS (if separate)"),
    ), sizes=("map_1m_n",), timeout=900.0),
    Scenario("actor", "actor method call round trip", (
        M("median_us", "µs", False, label="median"),
        M("p99_us", "µs", False, label="p99"),
    ), sizes=("actor_n",)),
)

BY_NAME = {s.name: s for s in SCENARIOS}

#: default sizes (issue 3) and the --tiny sizes (a quick proof that everything runs)
DEFAULT_SIZES: dict[str, float] = {
    "latency_n": 1000,
    "map_n": 20_000,
    "map_large_n": 200_000,
    "chain_n": 2000,
    "tree_leaves": 4096,
    "shuffle_n": 100,
    "shuffle_part_bytes": 1000,
    "array_mb": 200,
    "waiting_n": 100_000,
    "cancel_wait": 30,
    "map_1m_n": 1_000_000,
    "actor_n": 2000,
    "rss_interval": 0.05,
}
TINY_SIZES: dict[str, float] = {
    "latency_n": 20,
    "map_n": 200,
    "map_large_n": 500,
    "chain_n": 20,
    "tree_leaves": 32,
    "shuffle_n": 8,
    "shuffle_part_bytes": 100,
    "array_mb": 1,
    "waiting_n": 1000,
    "cancel_wait": 20,
    "map_1m_n": 1000,  # dask does ~300-500 tasks/s here: keep the smoke run short
    "actor_n": 20,
    "rss_interval": 0.05,
}
SIZE_HELP = {
    "latency_n": "submit→result round trips timed",
    "map_n": "tasks in the map scenario",
    "map_large_n": "tasks in the map_large scenario",
    "chain_n": "length of the dependency chain",
    "tree_leaves": "leaves of the tree reduction",
    "shuffle_n": "producers (= consumers) of the all-to-all shuffle",
    "shuffle_part_bytes": "bytes of each producer→consumer piece",
    "array_mb": "size of the numpy array (MB = 1e6 bytes) for scatter/gather and worker→worker",
    "waiting_n": "tasks waiting on the gate task",
    "cancel_wait": "waiting: seconds to wait for the scheduler to empty after cancel",
    "map_1m_n": "tasks in the map_1m scenario",
    "actor_n": "actor calls timed",
    "rss_interval": "map_1m: seconds between RSS samples",
}


def size_label(sc: Scenario, sizes: dict[str, float]) -> str:
    """A short text such as 'n=20000' for the table."""
    parts = []
    for k in sc.sizes:
        v = sizes.get(k)
        if v is None:
            continue
        short = {"latency_n": "n", "map_n": "n", "map_large_n": "n", "chain_n": "n",
                 "tree_leaves": "leaves", "shuffle_n": "n", "shuffle_part_bytes": "piece B",
                 "array_mb": "MB", "waiting_n": "n", "map_1m_n": "n", "actor_n": "n"}.get(k, k)
        parts.append(f"{short}={int(v)}" if float(v).is_integer() else f"{short}={v:g}")
    return ", ".join(parts)
