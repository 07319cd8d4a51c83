#!/usr/bin/env python3
"""shoal against dask.distributed, side by side, in one run.

    python benchmarks/run.py                      # every scenario, both, 3 repeats
    python benchmarks/run.py --tiny --repeat 1    # tiny sizes: proves everything runs
    python benchmarks/run.py --scenarios map,chain --map-n 50000
    python benchmarks/run.py --compare A.json B.json
    python benchmarks/run.py --report A.json
    python benchmarks/run.py --reference          # the reference harness, shoal and dask

Every (scenario, repeat, implementation) runs in a fresh child process with a
fresh cluster; implementations alternate (shoal, dask, shoal, dask, ...).
Before each child the runner waits (bounded) for the machine to be idle.  The
table of medians goes to stdout; JSON goes to benchmarks/results/<time>.json.

Only the standard library is imported here: the children import the
implementation, so import time is measured in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import machine, reference, report  # noqa: E402
from benchmarks.spec import (  # noqa: E402
    BY_NAME,
    DEFAULT_SIZES,
    IMPLS,
    SCENARIOS,
    SIZE_HELP,
    TINY_SIZES,
)

RESULT_MARK = "@@RESULT "  # child.py prints its result after this
SCHEMA = 1


# ---------------------------------------------------------------- one child
def _kill_group(pgid: int) -> None:
    """Kill the process group of a child we started (it has its own session)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stderr_digest(text: str, n: int = 12) -> list[str]:
    """The lines of a child's stderr worth keeping in the JSON."""
    keep = []
    for line in text.splitlines():
        low = line.lower()
        if any(w in low for w in ("error", "exception", "warning", "timeout", "killed")):
            line = line.strip()[:300]
            if line not in keep:
                keep.append(line)
    return keep[:n]


def run_child(impl: str, scenario: str, repeat: int, cfg: dict, opts: argparse.Namespace,
              workdir: str, log_lock: threading.Lock) -> dict:
    timeout = float(cfg["timeout"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    cmd = [opts.python, "-m", "benchmarks.child", "--impl", impl, "--scenario", scenario,
           "--config", json.dumps(cfg)]
    if opts.jobs > 1:
        busy, waited = None, 0.0  # we are the load: do not wait for ourselves
    else:
        busy, waited = machine.wait_idle(opts.idle_wait, opts.idle_threshold)
    git = machine.git_state(ROOT)  # others may commit to shoal/ while we run
    sys0 = machine.busy_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=workdir, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    _kill_group(proc.pid)  # anything the child left behind
    sys1 = machine.busy_seconds()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec: dict = {"impl": impl, "scenario": scenario, "repeat": repeat, "started": started,
                 "wall_s": round(wall, 2), "returncode": proc.returncode, "timed_out": timed_out,
                 "git": git, "metrics": {}, "errors": {}, "extra": {}, "error": None}
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            rec.update(json.loads(line[len(RESULT_MARK):]))
    if timed_out:
        rec["error"] = f"timeout: killed after {timeout:g} s"
    elif not any(line.startswith(RESULT_MARK) for line in out.splitlines()):
        tail = [x for x in err.strip().splitlines() if x.strip()][-1:] or ["(no output)"]
        rec["error"] = f"child exited with code {proc.returncode}: {tail[0][:300]}"
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    noise: dict = {"busy_pct_before": busy, "idle_wait_s": waited}
    if sys0 is not None and sys1 is not None and opts.jobs == 1:
        # CPU time spent by others while the child ran, as a share of all CPUs
        noise["foreign_cpu_share"] = round(
            max(0.0, (sys1 - sys0) - own) / (wall * (os.cpu_count() or 1)), 3)
    rec["noise"] = noise
    digest = _stderr_digest(err)
    if digest:
        rec["stderr"] = digest
    if rec.get("error") and rec.get("traceback") is None and err.strip():
        rec["stderr_tail"] = err.strip().splitlines()[-40:]
    with log_lock, open(opts.log, "a") as f:
        f.write(f"===== {started} {impl} {scenario} #{repeat + 1} rc={proc.returncode} "
                f"wall={wall:.1f}s{' TIMEOUT' if timed_out else ''}\n{err}\n")
    return rec


def _progress(i: int, total: int, rec: dict) -> str:
    sc = BY_NAME[rec["scenario"]]
    parts = []
    for m in sc.metrics:
        v = rec["metrics"].get(m.name)
        if v is not None:
            parts.append(f"{m.name}={report.fmt(v, m.unit)}")
    text = " ".join(parts)
    if rec.get("error"):
        text += f"  ERROR {rec['error'][:160]}"
    for name, msg in rec.get("errors", {}).items():
        text += f"  ({name}: {msg[:100]})"
    return (f"[{i:3d}/{total}] {rec['impl']:5s} {rec['scenario']:16s} #{rec['repeat'] + 1} "
            f"{text}  ({rec['wall_s']:.1f} s)")


# ---------------------------------------------------------------- the suite
def run_suite(opts: argparse.Namespace, sizes: dict, scenarios: list[str], impls: list[str],
              skipped_impls: dict[str, str]) -> dict:
    doc: dict = {
        "schema": SCHEMA,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "finished": None,
        "argv": sys.argv[1:],
        "impls": impls,
        "skipped_impls": skipped_impls,
        "config": {"repeat": opts.repeat, "tiny": opts.tiny, "sizes": sizes,
                   "scenarios": scenarios, "timeouts": {}, "jobs": opts.jobs,
                   "idle_wait": opts.idle_wait, "idle_threshold": opts.idle_threshold,
                   "cluster": "Client(n_workers=2, threads_per_worker=1, processes=True)",
                   "shoal_byte_compiled": not opts.source_only},
        "machine": machine.info(ROOT),
        "runs": [],
    }
    jobs = []
    for name in scenarios:
        timeout = opts.timeout or opts.scenario_timeouts.get(name) or BY_NAME[name].timeout
        doc["config"]["timeouts"][name] = timeout
        cfg = {k: sizes[k] for k in DEFAULT_SIZES} | {"timeout": timeout}
        for r in range(opts.repeat):
            for impl in impls:
                jobs.append((impl, name, r, cfg))
    workdir = tempfile.mkdtemp(prefix="shoal-bench-")
    log_lock = threading.Lock()
    save_lock = threading.Lock()
    done = 0

    def finish(rec: dict) -> None:
        nonlocal done
        with save_lock:
            done += 1
            doc["runs"].append(rec)
            print(_progress(done, len(jobs), rec), file=sys.stderr, flush=True)
            save(doc, opts.out)

    print(f"{len(jobs)} children: {', '.join(scenarios)} x {opts.repeat} x {', '.join(impls)}; "
          f"JSON -> {opts.out}, child stderr -> {opts.log}", file=sys.stderr, flush=True)
    try:
        if opts.jobs <= 1:
            for impl, name, r, cfg in jobs:
                finish(run_child(impl, name, r, cfg, opts, workdir, log_lock))
        else:
            # longest first (dask, and the big scenarios), so that the run ends sooner
            heavy = {"map_1m": 0, "map_large": 1, "waiting": 2}
            todo = sorted(jobs, key=lambda j: (j[0] != "dask", heavy.get(j[1], 9)))
            with concurrent.futures.ThreadPoolExecutor(opts.jobs) as ex:
                futs = [ex.submit(run_child, impl, name, r, cfg, opts, workdir, log_lock)
                        for impl, name, r, cfg in todo]
                for f in concurrent.futures.as_completed(futs):
                    finish(f.result())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    order = {(i, n, r): k for k, (i, n, r, _) in enumerate(jobs)}
    doc["runs"].sort(key=lambda rec: order[(rec["impl"], rec["scenario"], rec["repeat"])])
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    doc["summary"] = report.summarize(doc["runs"], impls)
    save(doc, opts.out)
    return doc


def save(doc: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- command line
def compile_shoal(python: str) -> None:
    """Byte-compile shoal's modules, as installing a wheel does.

    dask's modules were byte-compiled by pip when it was installed; shoal's,
    in an editable install under PYTHONDONTWRITEBYTECODE=1 (set on the machine
    these figures come from), are compiled from source by every process that
    imports them, ~60 ms per cluster start that no user installing a wheel
    pays.  Compiling both puts them on the same footing; ``--source-only``
    measures the other way.  (compileall writes the files whatever
    PYTHONDONTWRITEBYTECODE says; imports then read them.)"""
    code = ("import compileall, os, shoal; "
            "compileall.compile_dir(os.path.dirname(shoal.__file__), quiet=1)")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode:
        print(f"WARNING: could not byte-compile shoal: {done.stderr.strip()[-300:]}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="scenarios: " + ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated (default shoal,dask)")
    ap.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    ap.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per scenario and implementation")
    ap.add_argument("--tiny", action="store_true", help="very small sizes (a quick smoke run)")
    ap.add_argument("--out", help="JSON results (default benchmarks/results/<time>.json)")
    ap.add_argument("--log", help="children's stderr (default: next to --out, .log)")
    ap.add_argument("--timeout", type=float, help="per-child limit in s for every scenario "
                    "(default: per scenario, 300 s; map_large 600, waiting 400, map_1m 900)")
    ap.add_argument("--scenario-timeout", action="append", default=[], metavar="NAME=SECONDS",
                    help="per-child limit for one scenario (repeatable)")
    ap.add_argument("--idle-wait", type=float, default=60,
                    help="before each child, wait up to this many s for the machine to be idle")
    ap.add_argument("--idle-threshold", type=float, default=30,
                    help="system CPU busy %% below which the machine counts as idle")
    ap.add_argument("--jobs", type=int, default=1,
                    help="children at once (>1 only to check that things run: figures are "
                         "then meaningless)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the children")
    ap.add_argument("--spread", action="store_true", help="show (min to max) in the table")
    ap.add_argument("--source-only", action="store_true",
                    help="do not byte-compile shoal first (see compile_shoal)")
    g = ap.add_argument_group("sizes (defaults: issue 3; --tiny: small)")
    for k, v in DEFAULT_SIZES.items():
        typ = float if isinstance(v, float) or k in ("array_mb", "cancel_wait") else int
        g.add_argument("--" + k.replace("_", "-"), type=typ, default=None,
                       help=f"{SIZE_HELP[k]} (default {v:g}, tiny {TINY_SIZES[k]:g})")
    g = ap.add_argument_group("other modes")
    g.add_argument("--report", metavar="JSON", help="print the table of a saved run")
    g.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="before/after table of two saved runs")
    g.add_argument("--reference", action="store_true",
                   help="run the reference harness (../shared/bench/futures_bench.py) for the "
                        "same implementations and sizes into one JSONL and print its tables")
    g.add_argument("--reference-script", help="path of futures_bench.py")
    g.add_argument("--floors", action="store_true", help="with --reference: also its floors")
    g.add_argument("--cross-check", nargs=2, metavar=("OURS.json", "REF.jsonl"),
                   help="our medians next to the reference harness's")
    opts = ap.parse_args(argv)
    opts.scenario_timeouts = {}
    for item in opts.scenario_timeout:
        name, _, secs = item.partition("=")
        if name not in BY_NAME or not secs:
            ap.error(f"--scenario-timeout {item!r}: expected NAME=SECONDS with a known NAME")
        opts.scenario_timeouts[name] = float(secs)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.report:
        print(report.side_by_side(load(opts.report), spread=opts.spread))
        return 0
    if opts.compare:
        print(report.compare(load(opts.compare[0]), load(opts.compare[1])))
        return 0
    if opts.cross_check:
        print(report.cross_check(load(opts.cross_check[0]), opts.cross_check[1]))
        return 0

    sizes = dict(TINY_SIZES if opts.tiny else DEFAULT_SIZES)
    for k in DEFAULT_SIZES:
        v = getattr(opts, k)
        if v is not None:
            sizes[k] = v
    impls = [i.strip() for i in opts.impls.split(",") if i.strip()]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f"unknown implementation {i!r} (known: {', '.join(IMPLS)})")
    skipped_impls = {}
    import importlib.util

    for i, mod in (("shoal", "shoal"), ("dask", "distributed")):
        if i in impls and opts.python == sys.executable and importlib.util.find_spec(mod) is None:
            skipped_impls[i] = f"{mod} is not importable"
            impls.remove(i)
            print(f"WARNING: {mod} is not importable: {i} left out", file=sys.stderr)
    if not impls:
        raise SystemExit("no implementation to run")
    if "shoal" in impls and not opts.source_only:
        compile_shoal(opts.python)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = os.path.join(HERE, "results")
    if opts.reference:
        opts.out = os.path.abspath(opts.out or os.path.join(results, f"{stamp}-reference.jsonl"))
        opts.log = os.path.abspath(opts.log or os.path.splitext(opts.out)[0] + ".log")
        for path in (opts.out, opts.log):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        script = opts.reference_script or reference.default_script(ROOT)
        print(f"reference harness {script} -> {opts.out}", file=sys.stderr)
        failures = reference.run_reference(
            script, impls, sizes, opts.repeat, opts.out, opts.log, opts.timeout or 400,
            opts.idle_wait, opts.idle_threshold, opts.floors, opts.python)
        reference.print_reference(script, opts.out, opts.python)
        print(f"\nJSONL: {opts.out}")
        return 1 if failures else 0

    if opts.scenarios == "all":
        scenarios = [s.name for s in SCENARIOS]
    else:
        scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
    for s in [*scenarios, *skip]:
        if s not in BY_NAME:
            raise SystemExit(f"unknown scenario {s!r} (known: {', '.join(BY_NAME)})")
    scenarios = [s for s in scenarios if s not in skip]
    opts.out = os.path.abspath(opts.out or os.path.join(results, f"{stamp}.json"))
    opts.log = os.path.abspath(opts.log or os.path.splitext(opts.out)[0] + ".log")
    for path in (opts.out, opts.log):
        os.makedirs(os.path.dirname(path), exist_ok=True)

    doc = run_suite(opts, sizes, scenarios, impls, skipped_impls)
    print(report.side_by_side(doc, spread=opts.spread))
    print(f"\nJSON: {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
