"""A cluster across two "machines": network namespaces joined by a veth pair.

The scheduler runs in one namespace listening on all interfaces, the worker
command in another, each seeing the other only through its own address.
Needs root and iproute2; skipped where namespaces cannot be made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.timeout(120)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def two_hosts():  # type: ignore[no-untyped-def]
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make network namespaces")
    tag = uuid.uuid4().hex[:6]
    a, b = f"shoal-a-{tag}", f"shoal-b-{tag}"
    va, vb = f"sva{tag}", f"svb{tag}"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    try:
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", a)
        _ip("link", "set", vb, "netns", b)
        _ip("-n", a, "addr", "add", "10.213.0.1/24", "dev", va)
        _ip("-n", b, "addr", "add", "10.213.0.2/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def test_scheduler_and_worker_on_different_hosts(two_hosts) -> None:  # type: ignore[no-untyped-def]
    a, b = two_hosts
    py = sys.executable
    scheduler = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "scheduler",
                                  "--host", "0.0.0.0", "--port", "8786"])
    workers = subprocess.Popen(["ip", "netns", "exec", b, py, "-m", "shoal", "worker",
                                "tcp://10.213.0.1:8786", "--nworkers", "2"])
    client_code = textwrap.dedent("""
        import numpy as np
        from shoal import Client
        with Client("tcp://10.213.0.1:8786", timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
            addrs = sorted(c.scheduler_info()["workers"])
            assert all(x.startswith("tcp://10.213.0.2:") for x in addrs), addrs
            # a large value moves worker to worker, then to the client
            big = c.submit(np.arange, 3_000_000, workers=[addrs[0]], pure=False)
            total = c.submit(np.sum, big, workers=[addrs[1]], pure=False)
            assert total.result(timeout=60) == np.arange(3_000_000).sum()
            assert (c.gather(big) == np.arange(3_000_000)).all()
            print("ok")
    """)
    try:
        out = subprocess.run(["ip", "netns", "exec", a, py, "-c", client_code],
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "ok"
    finally:
        for p in (workers, scheduler):
            p.terminate()
        for p in (workers, scheduler):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
