"""A worker on another "host" is cut off from the scheduler by a network
partition, then the partition heals (docs/failures.md).

Two network namespaces joined by a veth pair (test_multihost.py's
``two_hosts``): the scheduler, one worker and the client in the first, a
``shoal worker`` nanny with one worker in the second.  The partition is a
pair of blackhole routes (packets dropped silently, sockets stay open: what
a pulled cable looks like), removed to heal it.  Needs root and iproute2.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap

import pytest

from .test_multihost import two_hosts  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(180)

CLIENT = textwrap.dedent("""
    import os, subprocess, sys, time
    from shoal import Client

    A, B = os.environ["NS_A"], os.environ["NS_B"]

    def partition(on):
        op = "add" if on else "del"
        for ns, other in ((A, "10.213.0.2/32"), (B, "10.213.0.1/32")):
            subprocess.run(["ip", "-n", ns, "route", op, "blackhole", other], check=True)

    def make(x):
        return x, b"\\0" * 20_000  # too big to travel inline: lives on its worker only

    def use(pair, x):
        return pair[0] * 2 + x

    def until(what, predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out: " + what
            time.sleep(0.1)

    with Client("tcp://10.213.0.1:8786", timeout=30) as c:
        c.wait_for_workers(2, timeout=60)
        remote = [a for a in c.scheduler_info()["workers"] if a.startswith("tcp://10.213.0.2:")]
        assert len(remote) == 1, remote
        old = remote[0]
        pairs = c.map(make, range(200))
        c.gather(pairs)
        assert any(old in ws for ws in c.who_has(pairs).values())
        partition(True)
        try:
            outs = c.map(use, pairs, range(200))
            until("the cut-off worker's removal", lambda: old not in c.scheduler_info()["workers"])
            assert c.gather(outs) == [3 * x for x in range(200)]
        finally:
            partition(False)

        def fresh():
            return [a for a in c.scheduler_info()["workers"]
                    if a.startswith("tcp://10.213.0.2:") and a != old]

        until("a fresh worker from the healed host", lambda: len(fresh()) == 1, 90)
        reasons = [m["reason"] for _, m in c.get_events("worker-restarted")]
        assert any("lost its scheduler" in r for r in reasons), reasons
        again = c.submit(use, c.submit(make, 5, workers=fresh(), pure=False), 5, workers=fresh())
        assert again.result(timeout=30) == 15
        print("ok")
""")


def test_a_partitioned_worker_is_replaced_and_comes_back(two_hosts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    a, b = two_hosts
    py = sys.executable
    # beyond loopback every process needs the cluster's token
    env = {**os.environ, "NS_A": a, "NS_B": b, "SHOAL_TOKEN": secrets.token_hex(16),
           "SHOAL_SCHEDULER__WORKER_TTL": "3s",
           "SHOAL_WORKER__SCHEDULER_TTL": "3s"}
    scheduler = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "scheduler",
                                  "--host", "0.0.0.0", "--port", "8786"], env=env)
    local = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "worker",
                              "tcp://10.213.0.1:8786", "--nworkers", "1"], env=env)
    remote = subprocess.Popen(["ip", "netns", "exec", b, py, "-m", "shoal", "worker",
                               "tcp://10.213.0.1:8786", "--nworkers", "1"], env=env)
    try:
        out = subprocess.run(["ip", "netns", "exec", a, py, "-c", CLIENT], env=env,
                             capture_output=True, text=True, timeout=150)
        assert out.returncode == 0, out.stderr[-4000:]
        assert out.stdout.strip() == "ok"
    finally:
        for p in (remote, local, scheduler):
            p.terminate()
        for p in (remote, local, scheduler):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
