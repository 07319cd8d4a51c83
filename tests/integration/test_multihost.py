"""A cluster across two "machines": network namespaces joined by a veth pair.

The scheduler runs in one namespace listening on all interfaces, the worker
command in another, each seeing the other only through its own address.
Needs root and iproute2; skipped where namespaces cannot be made.
"""

from __future__ import annotations

import os
import pathlib
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


def _run_in(ns: str, code: str, env: dict[str, str] | None = None, timeout: float = 90
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_for_file(path: pathlib.Path, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)


def test_scheduler_and_worker_on_different_hosts(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A scheduler listening beyond loopback needs the token: ``--token-file``
    of a file that does not exist makes one (0600); workers read the same
    file, a client takes it from SHOAL_TOKEN."""
    a, b = two_hosts
    py = sys.executable
    token_file = tmp_path / "token"
    scheduler = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "scheduler",
                                  "--host", "0.0.0.0", "--port", "8786",
                                  "--token-file", str(token_file)])
    workers = None
    try:
        _wait_for_file(token_file)
        assert token_file.stat().st_mode & 0o777 == 0o600
        workers = subprocess.Popen(["ip", "netns", "exec", b, py, "-m", "shoal", "worker",
                                    "tcp://10.213.0.1:8786", "--nworkers", "2",
                                    "--token-file", str(token_file)])
        out = _run_in(a, """
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
        """, env={"SHOAL_TOKEN": token_file.read_text().strip()})
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "ok"
        # without the token, or with another, nobody gets in: at connect time
        for env, why in (({}, "none was given"), ({"SHOAL_TOKEN": "x" * 32}, "wrong")):
            # (an AuthenticationError, not the TimeoutError of a connect that waited)
            refused = _run_in(a, """
                from shoal import Client
                from shoal.errors import AuthenticationError
                try:
                    Client("tcp://10.213.0.1:8786", timeout=30)
                except AuthenticationError as e:
                    print(e)
            """, env=env)
            assert refused.returncode == 0, refused.stderr[-3000:]
            assert refused.stdout.startswith("authentication failed"), refused.stdout
            assert why in refused.stdout
    finally:
        _stop(*[p for p in (workers, scheduler) if p is not None])


def test_a_worker_without_the_token_is_refused(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A worker that does not hold the token exits with an error naming
    authentication; one listening beyond its machine without a token will
    not even start."""
    a, b = two_hosts
    py = sys.executable
    token_file = tmp_path / "token"
    scheduler = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "scheduler",
                                  "--host", "0.0.0.0", "--port", "8786",
                                  "--token-file", str(token_file)],
                                 stderr=subprocess.PIPE)
    try:
        _wait_for_file(token_file)
        for extra, env, message in (
                (["--host", "127.0.0.1"], {}, "authentication failed"),
                (["--host", "127.0.0.1"], {"SHOAL_TOKEN": "y" * 40}, "authentication failed"),
                ([], {}, "needs the cluster's token")):
            worker = subprocess.run(["ip", "netns", "exec", b, py, "-m", "shoal", "worker",
                                     "tcp://10.213.0.1:8786", "--no-nanny", *extra],
                                    capture_output=True, text=True, timeout=60,
                                    env={**os.environ, **env})
            assert worker.returncode != 0
            assert message in worker.stderr, worker.stderr[-2000:]
    finally:
        _stop(scheduler)
        assert scheduler.stderr is not None
        log = scheduler.stderr.read().decode()
        scheduler.stderr.close()
    assert log.count("refused tcp://10.213.0.2:") == 2, log[-3000:]


def test_mutual_tls_across_hosts(two_hosts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TLS with certificates made for this test: each host's certificate
    names its address, the scheduler's is checked against the address a
    worker or client connects to; a plain tcp:// client is told TLS is
    required, at once."""
    from shoal.comm.certificates import make_ca, make_certificate

    a, b = two_hosts
    py = sys.executable
    ca = make_ca()
    files = {"ca.pem": ca.cert}
    for name, host in (("a", "10.213.0.1"), ("b", "10.213.0.2")):
        cert, key = make_certificate(ca, [host], name=name)
        files[f"{name}.pem"], files[f"{name}.key"] = cert, key
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    token = tmp_path / "token"
    token.write_text("z" * 43)
    token.chmod(0o600)

    def tls(host: str) -> list[str]:
        return ["--tls-ca-file", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / f"{host}.pem"),
                "--tls-key", str(tmp_path / f"{host}.key"), "--token-file", str(token)]

    scheduler = subprocess.Popen(["ip", "netns", "exec", a, py, "-m", "shoal", "scheduler",
                                  "--host", "0.0.0.0", "--port", "8786", *tls("a")])
    workers = subprocess.Popen(["ip", "netns", "exec", b, py, "-m", "shoal", "worker",
                                "tls://10.213.0.1:8786", "--nworkers", "2", *tls("b")])
    try:
        out = _run_in(b, f"""
            from shoal import Client, Security
            sec = Security(tls_ca_file={str(tmp_path / "ca.pem")!r},
                           tls_client_cert={str(tmp_path / "b.pem")!r},
                           tls_client_key={str(tmp_path / "b.key")!r},
                           token_file={str(token)!r})
            with Client("tls://10.213.0.1:8786", security=sec, timeout=30) as c:
                c.wait_for_workers(2, timeout=60)
                addrs = sorted(c.scheduler_info()["workers"])
                assert all(x.startswith("tls://10.213.0.2:") for x in addrs), addrs
                x = c.submit(list, range(100_000), workers=[addrs[0]], pure=False)
                assert c.submit(sum, x, workers=[addrs[1]]).result(timeout=60) == sum(range(100_000))
                assert len(c.gather(x)) == 100_000
            try:
                Client("tcp://10.213.0.1:8786", timeout=30)
            except ConnectionRefusedError as e:
                print("plain:", e)
            # host a's certificate presented for a check against another name
            try:
                Client("tls://10.213.0.1:8786", security=sec, timeout=30).close()
            except Exception as e:
                print("unexpected", e)
            print("ok")
        """)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "requires TLS" in out.stdout and out.stdout.strip().endswith("ok"), out.stdout
        assert "unexpected" not in out.stdout
    finally:
        _stop(workers, scheduler)
