"""``shoal demo`` (the README's main job): it runs its three workloads on a
local cluster, says where to watch, and the command it prints for another
client connects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest


@pytest.mark.timeout(120)
def test_the_demo_runs_and_says_where_to_watch() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "demo", "--files", "5", "--linger", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("done in") for line in lines):
            line = proc.stdout.readline()
            assert line, f"the demo stopped early: {lines}"
            lines.append(line.rstrip())
        text = "\n".join(lines)
        assert "sum = 55 (expected 55)" in text and "1. read-transform-write: 5 files" in text
        link = re.search(r"watch it live: (http://\S+)", text)
        assert link is not None, text
        with urllib.request.urlopen(link.group(1), timeout=10) as page:  # the dashboard answers
            assert page.status == 200 and b"<html" in page.read().lower()
        other = re.search(r"another client: SHOAL_TOKEN_FILE=(\S+) (\S+) -c \"(.+)\"$", text, re.M)
        assert other is not None, text
        out = subprocess.run([other.group(2), "-c", other.group(3)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "SHOAL_TOKEN_FILE": other.group(1)})
        assert out.returncode == 0 and out.stdout.startswith("<Client: 'tcp://"), out.stderr
    finally:
        proc.terminate()
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
