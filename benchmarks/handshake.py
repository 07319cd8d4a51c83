#!/usr/bin/env python3
"""What the authenticated handshake costs: per connection, at start-up, and
(it should be nothing) per message afterwards.

    python benchmarks/handshake.py connections [--n 300]
    python benchmarks/handshake.py ab --before /path/to/other/shoal/checkout [--repeat 5]

``connections``: opens ``--n`` connections, one after the other, to a
scheduler in another process (``shoal scheduler``), each up to its
``Welcome``: a plain TCP connect alone (the floor), the handshake without a
token (loopback), with a token, and with TLS plus a token.  Median and 90th
percentile per connection.

``ab``: the same measurements in fresh child processes, alternating between
this checkout (after) and ``--before`` (a checkout of shoal without the
handshake, e.g. the commit before it), ``--repeat`` times each:

* start-up: ``Client(n_workers=2, threads_per_worker=1)`` in a fresh
  interpreter up to the first ``submit(...).result()`` (the benchmarks'
  ``startup`` scenario);
* per message: 2,000 ``submit(noop, i).result()`` round trips, median and
  p99 (after the handshake, a plain TCP connection is what it was);
* throughput: ``gather(map(noop, range(20000)))``, tasks per second;
* per connection: 200 connections to the cluster's scheduler, one after
  the other, each up to its ``Welcome`` (median).

Medians of the repeats are printed with the before/after ratio.  The
machine is shared: read ratios from one run, and the load reported with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# -- per connection ------------------------------------------------------------------------


def _start_scheduler(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "scheduler", "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "scheduler at " in line:
            return proc, line.rsplit("scheduler at ", 1)[1].strip()
    raise RuntimeError("the scheduler did not start")


def connections(n: int) -> dict[str, list[float]]:
    import asyncio
    import socket
    import tempfile

    from shoal.comm.certificates import make_ca, make_certificate
    from shoal.comm.core import connect_and_greet
    from shoal.security import Security, generate_token

    token = generate_token()
    ca = make_ca()
    cert, key = make_certificate(ca, ["127.0.0.1"])
    tmp = tempfile.mkdtemp()
    paths = {}
    for name, text in (("ca", ca.cert), ("cert", cert), ("key", key)):
        paths[name] = os.path.join(tmp, name + ".pem")
        with open(paths[name], "w") as f:
            f.write(text)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    tls_args = ["--tls-ca-file", paths["ca"], "--tls-cert", paths["cert"], "--tls-key", paths["key"]]
    setups = {
        "tcp connect only": ([], {}, None),
        "handshake, no token": ([], {}, Security(token=False)),
        "handshake, token": ([], {"SHOAL_TOKEN": token}, Security(token=token)),
        "TLS + token": (tls_args, {"SHOAL_TOKEN": token},
                        Security(token=token, tls_ca_file=paths["ca"], tls_client_cert=paths["cert"],
                                 tls_client_key=paths["key"])),
    }
    out: dict[str, list[float]] = {}
    for label, (args, env, sec) in setups.items():
        proc, address = _start_scheduler(args, {**base, **env})
        try:
            if sec is None:
                host, port = address.split("://")[1].rsplit(":", 1)
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    s = socket.create_connection((host, int(port)))
                    times.append(time.perf_counter() - t0)
                    s.close()
            else:
                async def run(sec: Security = sec, address: str = address) -> list[float]:
                    times = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        comm, _ = await connect_and_greet(address, "client", "bench", 10,
                                                          security=sec)
                        times.append(time.perf_counter() - t0)
                        comm.abort()
                    return times

                times = asyncio.run(run())
            out[label] = times
        finally:
            proc.terminate()
            proc.wait(15)
            if proc.stderr is not None:
                proc.stderr.close()
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.9 * (len(values) - 1))]


# -- A/B in child processes -------------------------------------------------------------------

CHILD = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
from shoal import Client
def noop(x=None):
    return x
with Client(n_workers=2, threads_per_worker=1) as c:
    c.submit(noop, 0).result()
    startup = time.perf_counter() - t0
    c.gather(c.map(noop, range(50)))
    lat = []
    for i in range(2000):
        t = time.perf_counter()
        c.submit(noop, i, pure=False).result()
        lat.append(time.perf_counter() - t)
    lat.sort()
    t = time.perf_counter()
    c.gather(c.map(noop, range(20000), pure=False))
    rate = 20000 / (time.perf_counter() - t)
    import asyncio, inspect
    from shoal.comm.core import connect_and_greet
    kw = ({"security": c.security}
          if "security" in inspect.signature(connect_and_greet).parameters else {})
    async def connections():
        times = []
        for i in range(200):
            t = time.perf_counter()
            comm, _ = await connect_and_greet(c.scheduler_address, "client", "bench", 10, **kw)
            times.append(time.perf_counter() - t)
            comm.abort()
        return times
    conn = sorted(asyncio.run(connections()))
print(json.dumps({"startup_s": startup, "latency_median_us": statistics.median(lat) * 1e6,
                  "latency_p99_us": lat[int(0.99 * len(lat))] * 1e6, "map_tasks_per_s": rate,
                  "connect_median_us": statistics.median(conn) * 1e6}))
"""


def _child(tree: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                         timeout=600, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _load() -> float:
    return os.getloadavg()[0]


def ab(before: str, repeat: int) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(before, "shoal"),
                    os.path.join(ROOT, "shoal")], capture_output=True)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    loads = []
    for i in range(repeat):
        for label, tree in (("before", before), ("after", ROOT)) if i % 2 == 0 else \
                (("after", ROOT), ("before", before)):
            loads.append(_load())
            runs[label].append(_child(tree))
            print(f"  {label:6} run {i + 1}: {runs[label][-1]}", file=sys.stderr)
    print(f"A/B, {repeat} alternating runs each; load average before each run: "
          f"{min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    print(f"{'metric':22} {'before':>12} {'after':>12} {'after/before':>13}")
    for metric in runs["after"][0]:
        b = statistics.median(r[metric] for r in runs["before"])
        a = statistics.median(r[metric] for r in runs["after"])
        print(f"{metric:22} {b:12.4g} {a:12.4g} {a / b:13.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("connections")
    c.add_argument("--n", type=int, default=300)
    a = sub.add_parser("ab")
    a.add_argument("--before", required=True, help="a shoal checkout without the handshake")
    a.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.what == "connections":
        sys.path.insert(0, ROOT)
        print(f"{args.n} connections each, one after the other, to a scheduler process; "
              f"load average {_load():.2f} on {os.cpu_count()} CPUs")
        print(f"{'':22} {'median us':>10} {'p90 us':>10}")
        for label, times in connections(args.n).items():
            med, p90 = _stats(times)
            print(f"{label:22} {med * 1e6:10.0f} {p90 * 1e6:10.0f}")
    else:
        ab(os.path.abspath(args.before), args.repeat)


if __name__ == "__main__":
    main()
