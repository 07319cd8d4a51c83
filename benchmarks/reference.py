"""Run the reference harness (../shared/bench/futures_bench.py) for shoal and
dask into one JSONL file, alternating implementations per scenario and repeat,
and print its numbers side by side.  Standard library only.

    python benchmarks/run.py --reference [--repeat 1] [--tiny] [--floors]
    python benchmarks/run.py --cross-check results/OURS.json results/REF.jsonl
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks import report

#: the reference's scenarios for the dask-compatible implementations, in its order
REF_SCENARIOS = ("startup_s", "latency_us", "throughput_map", "throughput_chain", "tree_reduce",
                 "scatter_gather_MBps", "worker_to_worker_MBps", "scheduler_bytes_per_task",
                 "actor_call_us")
REF_FLOORS = ("floor_rtt_us", "floor_tcp_MBps", "floor_pickle_MBps")
#: our size -> the reference's flag
REF_SIZE_FLAGS = {"latency_n": "--latency-n", "map_n": "--map-n", "chain_n": "--chain-n",
                  "tree_leaves": "--tree-leaves", "array_mb": "--array-mb",
                  "waiting_n": "--waiting-n", "actor_n": "--actor-n",
                  "cancel_wait": "--cancel-wait"}


def default_script(root: str) -> str:
    return os.path.normpath(os.path.join(root, "..", "shared", "bench", "futures_bench.py"))


def run_reference(script: str, impls: list[str], sizes: dict, repeat: int, out: str, log: str,
                  timeout: float, idle_wait: float, idle_threshold: float, floors: bool,
                  python: str = sys.executable) -> int:
    """Run every reference scenario, alternating implementations; returns failures."""
    if not os.path.exists(script):
        raise SystemExit(f"reference harness not found: {script} (use --reference-script)")
    size_args = []
    for k, flag in REF_SIZE_FLAGS.items():
        size_args += [flag, f"{sizes[k]:g}"]
    common = ["--repeat", "1", "--out", out, "--log", log, "--timeout", f"{timeout:g}",
              "--idle-wait", f"{idle_wait:g}", "--idle-threshold", f"{idle_threshold:g}", *size_args]
    jobs = [(sc, r, impl) for sc in REF_SCENARIOS for r in range(repeat) for impl in impls]
    if floors:
        jobs += [(sc, 0, "floor") for sc in REF_FLOORS]
    failures = 0
    for i, (sc, r, impl) in enumerate(jobs, 1):
        t = time.perf_counter()
        # one invocation per (scenario, repeat, impl): the reference itself would run
        # all repeats of one implementation back to back
        proc = subprocess.run([python, script, "--impl", impl, "--scenario", sc, *common],
                              capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        if proc.returncode != 0:
            failures += 1
            with open(log, "a") as f:
                f.write(f"===== runner: {impl} {sc} exit {proc.returncode}\n{proc.stderr}\n")
        print(f"[{i:3d}/{len(jobs)}] reference {impl:5s} {sc} #{r + 1}: {status} "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    return failures


def print_reference(script: str, out: str, python: str = sys.executable) -> None:
    print("### the reference harness's own report (`futures_bench.py --report`)\n")
    print("(with several repeats it shows the last record of each metric; the merged "
          "table below has the medians)\n")
    proc = subprocess.run([python, script, "--report", out], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    print(proc.stdout)
    print("### reference harness, medians over all repeats, shoal against dask\n")
    print(report.reference_table(out))
