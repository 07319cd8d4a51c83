"""A cluster formed by hand with the command line, as across machines."""

from __future__ import annotations

import pathlib
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from shoal import Client

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def inc(x: int) -> int:
    return x + 1


def stop(proc: subprocess.Popen) -> int:  # type: ignore[type-arg]
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args} did not stop on SIGTERM")


def test_scheduler_and_nanny_supervised_workers_from_the_command_line() -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "shoal", "scheduler", "--port", str(port)],
                                 stderr=subprocess.PIPE, text=True)
    workers = subprocess.Popen([sys.executable, "-m", "shoal", "worker", address, "--nworkers", "2",
                                "--nthreads", "2", "--name", "cli"])
    try:
        with Client(address, timeout=20) as client:
            client.wait_for_workers(2, timeout=30)
            info = client.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["cli-0", "cli-1"]
            assert all(w["nthreads"] == 2 for w in info.values())
            assert client.gather(client.map(inc, range(50))) == list(range(1, 51))

            # kill one worker process: its nanny starts a new one
            victim = next(iter(info.values()))["pid"]
            psutil.Process(victim).kill()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pids = {w["pid"] for w in client.scheduler_info()["workers"].values()}
                if len(pids) == 2 and victim not in pids:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the killed worker was not replaced")
            assert client.submit(inc, 1, pure=False).result(timeout=20) == 2
        children = psutil.Process(workers.pid).children()
        assert stop(workers) == 0
        psutil.wait_procs(children, timeout=10)
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        for p in (workers, scheduler):
            if p.poll() is None:
                stop(p)
        assert scheduler.stderr is not None
        log = scheduler.stderr.read()
        scheduler.stderr.close()
    assert f"scheduler listening at {address}" in log


def test_worker_for_an_unreachable_scheduler_exits_with_an_error() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "worker", f"tcp://127.0.0.1:{port}", "--no-nanny",
         "--connect-timeout", "1"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr


# --------------------------------------------------------------------------- dask's options

PRELOAD = '''
import os, pathlib
def dask_setup(server):
    name = f"setup-{type(server).__name__}-{os.getpid()}"
    pathlib.Path(os.environ["PRELOAD_OUT"], name).write_text(server.address)
def dask_teardown(server):
    pathlib.Path(os.environ["PRELOAD_OUT"], f"teardown-{type(server).__name__}-{os.getpid()}").touch()
'''

CLICK_PRELOAD = '''
import os, pathlib, click
@click.command()
@click.option("--greeting", default="none")
def dask_setup(scheduler, greeting):
    pathlib.Path(os.environ["PRELOAD_OUT"], "greeting").write_text(greeting)
'''


def shoal(*args: str, **kwargs: object) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-m", "shoal", *args], **kwargs)  # type: ignore[call-overload,no-any-return]


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not come true in time")
        time.sleep(0.05)


def local_directory() -> str:
    from shoal import get_worker

    return get_worker().local_directory  # type: ignore[no-any-return]


def test_scheduler_file_pid_files_preloads_memory_fraction_resources_local_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from shoal.deploy.sizing import system_memory

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "cli_preload.py").write_text(PRELOAD)
    (tmp_path / "cli_click_preload.py").write_text(CLICK_PRELOAD)
    env = dict(os.environ, PRELOAD_OUT=str(out))
    sf, spid, wpid, ld = (str(tmp_path / n) for n in ("sched.json", "s.pid", "w.pid", "ld"))
    scheduler = shoal("scheduler", "--port", "0", "--scheduler-file", sf, "--pid-file", spid,
                      "--preload", str(tmp_path / "cli_preload.py"),
                      "--preload", str(tmp_path / "cli_click_preload.py"), "--greeting", "hello",
                      env=env)
    workers = shoal("worker", "--scheduler-file", sf, "--nworkers", "2", "--nthreads", "1",
                    "--name", "cli", "--memory-limit", "0.25", "--resources", "GPU=2 MEM=10e9",
                    "--local-directory", ld, "--pid-file", wpid,
                    "--preload", str(tmp_path / "cli_preload.py"), env=env)
    try:
        with Client(scheduler_file=sf, timeout=30) as client:
            client.wait_for_workers(2, timeout=30)
            assert os.stat(sf).st_mode & 0o777 == 0o600
            assert pathlib.Path(spid).read_text() == str(scheduler.pid)
            assert pathlib.Path(wpid).read_text() == str(workers.pid)
            info = client.scheduler_info()["workers"]
            assert sorted(w["name"] for w in info.values()) == ["cli-0", "cli-1"]
            for w in info.values():
                assert w["memory_limit"] == int(0.25 * system_memory())
                assert w["resources"] == {"GPU": 2.0, "MEM": 1e10}
                assert w["local_directory"].startswith(os.path.join(ld, "shoal-scratch-space", "worker-"))
                assert os.path.isdir(w["local_directory"])
            dirs = {w["local_directory"] for w in info.values()}
            seen = {client.submit(local_directory, workers=[a], pure=False).result(timeout=20)
                    for a in info}
            assert seen == dirs
            setups = sorted(p.name.split("-")[1] for p in out.glob("setup-*"))
            assert setups == ["Scheduler", "Worker", "Worker"]
            assert (out / "greeting").read_text() == "hello"
            assert client.submit(resource_hungry, resources={"GPU": 2}).result(timeout=20) == "ran"
        assert stop(workers) == 0
        assert not os.path.exists(wpid)
        assert not any(os.path.exists(d) for d in dirs)
        assert len(list(out.glob("teardown-Worker-*"))) == 2
        assert stop(scheduler) == 0
        assert not os.path.exists(sf) and not os.path.exists(spid)
        assert len(list(out.glob("teardown-Scheduler-*"))) == 1
    finally:
        for p in (workers, scheduler):
            if p.poll() is None:
                stop(p)


def resource_hungry() -> str:
    return "ran"


def test_lifetime_restart_and_lifetime_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sf = str(tmp_path / "sched.json")
    scheduler = shoal("scheduler", "--port", "0", "--scheduler-file", sf)
    restarting = shoal("worker", "--scheduler-file", sf, "--name", "phoenix", "--nthreads", "1",
                       "--lifetime", "1s", "--lifetime-restart")
    ending = shoal("worker", "--scheduler-file", sf, "--name", "mayfly", "--nthreads", "1",
                   "--lifetime", "1s", "--lifetime-stagger", "0.2s")
    try:
        with Client(scheduler_file=sf, timeout=30) as client:
            pids: set[int] = set()

            def restarted() -> bool:
                pids.update(w["pid"] for w in client.scheduler_info()["workers"].values()
                            if w["name"] == "phoenix")
                return len(pids) >= 3  # started, and started again twice

            wait_for(restarted)
            assert ending.wait(30) == 0  # its worker left for good: its nanny is done
            assert restarting.poll() is None
            assert "mayfly" not in {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert stop(restarting) == 0
    finally:
        for p in (restarting, ending, scheduler):
            if p.poll() is None:
                stop(p)


def test_a_scheduler_with_an_idle_timeout_closes_itself() -> None:
    scheduler = shoal("scheduler", "--port", "0", "--idle-timeout", "0.3s")
    try:
        assert scheduler.wait(30) == 0
    finally:
        if scheduler.poll() is None:
            stop(scheduler)


def test_version() -> None:
    from shoal import __version__

    for cmd in ([], ["scheduler"], ["worker"]):
        out = subprocess.run([sys.executable, "-m", "shoal", *cmd, "--version"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == f"shoal, version {__version__}"


@pytest.mark.parametrize(("args", "message"), [
    (["worker", "tcp://127.0.0.1:1", "--tls-cert", "c.pem"], "TLS"),
    (["scheduler", "--tls-key", "k.pem"], "TLS"),
    (["scheduler", "--protocol", "ucx"], "tcp"),
    (["scheduler", "--jupyter"], "Jupyter"),
    (["worker", "tcp://127.0.0.1:1", "--nworkers", "2", "--no-nanny"], "--no-nanny"),
    (["worker", "tcp://127.0.0.1:1", "--worker-class", "my.Worker"], "worker-class"),
    (["worker", "tcp://127.0.0.1:1", "--preload-nanny", "m"], "preload-nanny"),
    (["worker", "tcp://127.0.0.1:1", "--memory-limit", "lots"], "memory limit"),
    (["worker", "tcp://127.0.0.1:1", "--nworkers", "-99"], "no worker"),
    (["worker"], "--scheduler-file"),
    (["worker", "tcp://127.0.0.1:1", "--no-such-option", "3"], "unrecognized"),
])
def test_options_shoal_cannot_use_are_refused_clearly(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
