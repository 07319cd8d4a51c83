"""The benchmark suite still runs: tiny sizes, one repeat, no timing assertions.

dask.distributed is a dev dependency, not a test dependency: without it only
shoal is run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")
sys.path.insert(0, ROOT)
from benchmarks.spec import SCENARIOS  # noqa: E402

HAVE_DASK = importlib.util.find_spec("distributed") is not None
IMPLS = ["shoal", "dask"] if HAVE_DASK else ["shoal"]


def run(*args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.timeout(240)
def test_tiny_run_produces_every_metric_or_an_error(tmp_path):
    out = tmp_path / "tiny.json"
    # --jobs 4: children run four at a time to keep this short (the figures do not matter)
    proc = run("--tiny", "--repeat", "1", "--idle-wait", "0", "--jobs", "4",
               "--impls", ",".join(IMPLS), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["impls"] == IMPLS
    assert doc["finished"]
    assert doc["machine"]["cpu_count"] and doc["machine"]["versions"]["shoal"]

    runs = {(r["impl"], r["scenario"]): r for r in doc["runs"]}
    for sc in SCENARIOS:
        for impl in IMPLS:
            r = runs.get((impl, sc.name))
            assert r is not None, f"{impl} {sc.name} did not run"
            for m in sc.metrics:
                v = r["metrics"].get(m.name)
                err = r["errors"].get(m.name) or r.get("error")
                if v is not None:
                    assert isinstance(v, float) and math.isfinite(v), (impl, sc.name, m.name, v)
                elif not m.optional:
                    assert err, f"{impl} {sc.name}.{m.name}: neither a number nor an error"

    # the table has a row per metric, and the saved run can be re-read and compared
    for sc in SCENARIOS:
        assert f"| {sc.name}" in proc.stdout
    rep = run("--report", str(out), timeout=30)
    assert rep.returncode == 0 and "shoal" in rep.stdout
    cmp = run("--compare", str(out), str(out), timeout=30)
    assert cmp.returncode == 0 and "map.tasks_per_s" in cmp.stdout


@pytest.mark.timeout(120)
def test_timeouts_are_recorded_as_errors_not_fatal(tmp_path):
    """A child killed by its hard timeout, and a scenario that runs out of time
    on its own deadline, both become errors in the results; the run goes on."""
    out = tmp_path / "timeouts.json"
    # 0.05 s: far less than any child needs to start a cluster (shoal's own
    # start to first result is ~0.2 s; with 0.3 s here the child sometimes finished)
    proc = run("--scenarios", "startup,latency", "--scenario-timeout", "startup=0.05",
               "--scenario-timeout", "latency=10", "--latency-n", "1000000000",
               "--repeat", "1", "--idle-wait", "0", "--impls", "shoal", "--out", str(out),
               timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    runs = {r["scenario"]: r for r in doc["runs"]}
    assert runs["startup"]["timed_out"] and "timeout" in runs["startup"]["error"]
    assert not runs["latency"]["timed_out"]
    assert "ScenarioTimeout" in runs["latency"]["error"]
    assert "error [" in proc.stdout


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="epoll and fork")
def test_the_wake_up_floor_probe_runs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "wake_floor.py"),
                           "--rounds", "20", "--gap-us", "100", "--window-us", "200"],
                          capture_output=True, text=True, timeout=50, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("sleeping receiver") and lines[1].startswith("polling receiver")
    assert "per round trip" in lines[2]
