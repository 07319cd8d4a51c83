"""SSHCluster against real sshd servers on two "machines": network
namespaces joined by a veth pair, each running OpenSSH's sshd on its own
address.  The cluster is driven from the first namespace (the scheduler's
host): the scheduler starts there over ssh, two workers on the second.

What must hold: the workers join and compute; the cluster's token reaches
the remote processes on their standard input (it is in their environment,
on no command line); a scheduler file written remotely lets a client in;
scaling down retires a host's workers and ends their session; closing the
cluster ends every remote process.  Needs root, iproute2,
OpenSSH's sshd (Debian: openssh-server) and asyncssh; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shoal import SSHCluster
from tests.conftest import poll_until

SSHD = "/usr/sbin/sshd"
HOSTS = ("10.214.0.1", "10.214.0.2")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _write_keys(directory: str) -> str:
    import asyncssh

    for name in ("host_key", "client_key"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(os.path.join(directory, name))
        key.write_public_key(os.path.join(directory, name + ".pub"))
        os.chmod(os.path.join(directory, name), 0o600)
    os.rename(os.path.join(directory, "client_key.pub"), os.path.join(directory, "authorized_keys"))
    return os.path.join(directory, "client_key")


def _sshd_config(directory: str, host: str) -> str:
    path = os.path.join(directory, f"sshd-{host}.conf")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
            Port 22
            ListenAddress {host}
            HostKey {directory}/host_key
            PidFile {directory}/sshd-{host}.pid
            AuthorizedKeysFile {directory}/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            StrictModes no
            UsePAM no
            PrintMotd no
            """))
    return path


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture
def ssh_hosts(tmp_path: Any) -> Iterator[tuple[str, str]]:
    """Two namespaces with an sshd each; (first namespace, client key)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make network namespaces")
    if not os.path.exists(SSHD):
        pytest.skip("needs OpenSSH's sshd (Debian: apt-get install openssh-server)")
    pytest.importorskip("asyncssh")
    directory = str(tmp_path)
    key = _write_keys(directory)
    tag = uuid.uuid4().hex[:6]
    namespaces = (f"shoal-ssh-a-{tag}", f"shoal-ssh-b-{tag}")
    devices = (f"ssa{tag}", f"ssb{tag}")
    try:
        for ns in namespaces:
            _ip("netns", "add", ns)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _ip("link", "add", devices[0], "type", "veth", "peer", "name", devices[1])
        for ns, dev, host in zip(namespaces, devices, HOSTS):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{host}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        logs = []
        for ns, host in zip(namespaces, HOSTS):
            log = os.path.join(directory, f"sshd-{host}.log")
            logs.append(log)
            with open(log, "wb") as out:
                servers.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", _sshd_config(directory, host)],
                    stdout=out, stderr=subprocess.STDOUT))

        def listening() -> bool:
            return all("Server listening" in _read(log) for log in logs)

        if not poll_until(listening, timeout=20):
            pytest.fail("sshd did not start: " + " | ".join(_read(log) for log in logs))
        yield namespaces[0], key
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


DRIVER = """
import json, os, sys
from shoal import Client, SSHCluster

scheduler_file, key = sys.argv[1:3]
token = os.environ["SHOAL_TOKEN"]  # the cluster's token, where cluster_token finds it
options = {"known_hosts": None, "client_keys": [key], "username": "root"}
out = {}
cluster = SSHCluster(%(hosts)r, connect_options=options,
                     worker_options={"nthreads": 1, "n_workers": 2},
                     scheduler_options={"port": 0, "scheduler_file": scheduler_file})
try:
    out["address"] = cluster.scheduler_address
    out["plan"] = sorted(cluster.plan)
    with Client(scheduler_file=scheduler_file, timeout=30) as client:
        client.wait_for_workers(4, timeout=60)
        info = client.scheduler_info()["workers"]
        out["workers"] = sorted(info)
        out["names"] = sorted(str(w["name"]) for w in info.values())
        out["result"] = client.submit(lambda x: x + 1, 41).result(timeout=30)
        out["token_in_environ"] = []
        for w in info.values():
            with open("/proc/%%d/environ" %% w["pid"], "rb") as f:
                environ = f.read().split(b"\\0")
            out["token_in_environ"].append(("SHOAL_TOKEN=" + token).encode() in environ)
        shown = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%%s/cmdline" %% pid, "rb") as f:
                    if token.encode() in f.read():
                        shown.append(pid)
            except OSError:
                pass
        out["token_on_command_lines"] = shown
        # scaled back to one entry (two workers): the other entry's workers
        # are retired (their results move) and their ssh session ends
        (leaving,) = [a for a, w in info.items() if w["name"] == "1-0"]
        held = client.submit(lambda: 123, workers=[leaving], pure=False)
        held.result(timeout=30)
        cluster.scale(2)
        out["after_scale"] = sorted(cluster.workers)
        out["workers_after_scale"] = len(client.scheduler_info()["workers"])
        out["held"] = held.result(timeout=30)
finally:
    cluster.close()
print(json.dumps(out))
"""


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.timeout(150)
def test_ssh_cluster_on_two_hosts_passes_the_token_on_stdin(ssh_hosts: tuple[str, str],
                                                           tmp_path: Any) -> None:
    namespace, key = ssh_hosts
    scheduler_file = str(tmp_path / "scheduler.json")
    token = "ssh-" + uuid.uuid4().hex + uuid.uuid4().hex
    env = {**os.environ, "SHOAL_TOKEN": token}  # the cluster's token, for this driver only
    run = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c",
         DRIVER % {"hosts": [HOSTS[0], HOSTS[1], HOSTS[1]]},
         scheduler_file, key], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["address"].startswith(f"tcp://{HOSTS[0]}:")
    assert out["plan"] == out["names"] == ["0-0", "0-1", "1-0", "1-1"]
    assert all(w.startswith(f"tcp://{HOSTS[1]}:") for w in out["workers"]), out["workers"]
    assert out["result"] == 42
    assert out["token_in_environ"] == [True] * 4
    assert out["token_on_command_lines"] == []
    assert out["after_scale"] == [0] and out["workers_after_scale"] == 2
    assert out["held"] == 123
    # closed: nothing started for the cluster is left, on either host
    started = time.monotonic()
    assert poll_until(lambda: not _processes_mentioning(out["address"])
                      and not _processes_mentioning(scheduler_file), timeout=30), \
        f"left running {time.monotonic() - started:.1f} s after close"


def test_ssh_cluster_keywords_are_checked_first() -> None:
    with pytest.raises(ValueError, match="hosts"):
        SSHCluster([])
    with pytest.raises(ValueError, match="connect_options"):
        SSHCluster(["a", "b"], connect_options=[{}])
    with pytest.raises(TypeError, match="old SSHCluster"):
        SSHCluster(["a", "b"], worker_addrs=["b"])
    with pytest.raises(NotImplementedError, match="worker_class"):
        SSHCluster(["127.0.0.1", "127.0.0.1"], worker_class="dask_cuda.CUDAWorker",
                   connect_options={"port": 1})
