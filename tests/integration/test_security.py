"""Only peers holding the cluster's token get in, on every port, and nothing
they send is decoded or unpickled before: real scheduler and worker
processes over real sockets.

The module's ``cluster`` (tests/conftest.py) is a LocalCluster, which made a
token of its own; its clients get it without being told.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import AuthenticationError, Client, LocalCluster, Security, config
from shoal.comm import handshake as hs
from shoal.comm.addresses import parse_address, parse_host_port
from shoal.comm.codec import MessageCodec
from shoal.comm.core import connect, connect_and_greet
from shoal.comm.framing import encode_frames
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload

from ..conftest import poll_until, token_env

pytestmark = pytest.mark.timeout(120)


def ports(client: Client) -> list[str]:
    """Every address the cluster's processes listen on."""
    return [client.scheduler_address, *client.scheduler_info()["workers"]]


def host_port(address: str) -> tuple[str, int]:
    return parse_host_port(parse_address(address)[1])


class MakesFile:
    """Unpickling this creates a file: the proof that bytes were unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def framed(msgs: list[object]) -> bytes:
    """Messages as they travel once a connection is authenticated."""
    return b"".join(bytes(memoryview(f).cast("B")) for f in encode_frames(MessageCodec().encode(msgs)))


def raw_handshake(address: str, token: str | None, role: str = "client"
                  ) -> tuple[socket.socket, hs.Event | None]:
    """A blocking socket that went through the handshake (or tried), and how it ended."""
    sock = socket.create_connection(host_port(address), timeout=20)
    machine = hs.ClientHandshake(role, token.encode() if token else None, os.urandom(32),
                                 m.PROTOCOL_VERSION)
    sock.sendall(machine.start())
    end = None
    while not machine.finished:
        data = sock.recv(machine.bytes_wanted())
        if not data:
            break
        for event in machine.receive_data(data):
            if isinstance(event, hs.SendData):
                sock.sendall(event.data)
            else:
                end = event
    return sock, end


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


# -- clients -------------------------------------------------------------------------------


def test_every_port_refuses_a_client_without_the_token(client: Client) -> None:
    async def attempt(address: str, security: Security) -> BaseException | None:
        try:
            comm, _ = await connect_and_greet(address, "client", timeout=30, security=security)
        except BaseException as e:
            return e
        comm.abort()
        return None

    for address in ports(client):
        for security, why in ((Security(token=False), "none was given"),
                              (Security(token="wrong-" * 8), "wrong or missing token")):
            error = asyncio.run(attempt(address, security))
            # an error at once, naming authentication; never a timeout
            assert isinstance(error, AuthenticationError), (address, error)
            assert "authentication failed" in str(error) and why in str(error)
            assert address in str(error)
        assert asyncio.run(attempt(address, client.security)) is None


def test_a_client_object_without_the_token_fails_at_connect_time(cluster: LocalCluster) -> None:
    with pytest.raises(AuthenticationError, match="authentication failed: wrong or missing token"):
        Client(cluster.scheduler_address, security=Security(token="not-the-token-" * 3), timeout=30)
    with pytest.raises(AuthenticationError, match="none was given"):
        Client(cluster.scheduler_address, security=Security(token=False), timeout=30)


def test_the_token_reaches_clients_made_here_and_elsewhere(cluster: LocalCluster) -> None:
    """A Client of this process finds the LocalCluster's token by its
    address; another process needs it (here through SHOAL_TOKEN)."""
    with Client(cluster.scheduler_address, timeout=30) as c:
        assert c.security is cluster.security
        assert c.submit(sum, [1, 2]).result(timeout=30) == 3
    code = ("import sys; from shoal import Client\n"
            "with Client(sys.argv[1], timeout=30) as c: print(c.submit(sum, [2, 3]).result())")
    out = subprocess.run([sys.executable, "-c", code, cluster.scheduler_address],
                         capture_output=True, text=True, timeout=60, env=token_env(cluster))
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr[-2000:]
    env = {k: v for k, v in token_env(cluster).items() if k != "SHOAL_TOKEN"}
    out = subprocess.run([sys.executable, "-c", code, cluster.scheduler_address],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "AuthenticationError" in out.stderr


def test_two_local_clusters_have_different_tokens(cluster: LocalCluster) -> None:
    with LocalCluster(n_workers=0) as other:
        assert other.security.token and other.security.token != cluster.security.token
        with pytest.raises(AuthenticationError):
            Client(other.scheduler_address, security=cluster.security, timeout=30)


def test_the_scheduler_logs_one_line_per_refused_peer(client: Client) -> None:
    sock, end = raw_handshake(client.scheduler_address, "an-impostor-token-" * 2)
    local_port = sock.getsockname()[1]
    assert isinstance(end, hs.HandshakeFailed) and end.auth and end.by_peer
    sock.close()

    def lines() -> list[str]:
        return [text for _, text in client.get_scheduler_logs()
                if f":{local_port}:" in text or text.endswith(f":{local_port}")]

    assert poll_until(lambda: lines(), timeout=20)
    (line,) = lines()
    assert "refused" in line and "authentication failed" in line


# -- workers -------------------------------------------------------------------------------


def _worker(cluster: LocalCluster, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", "worker", cluster.scheduler_address,
                           "--no-nanny", "--death-timeout", "20"], capture_output=True, text=True,
                          timeout=60, env=env)


def test_a_worker_without_the_token_cannot_join(cluster: LocalCluster) -> None:
    env = {k: v for k, v in token_env(cluster).items() if k != "SHOAL_TOKEN"}
    for extra in ({}, {"SHOAL_TOKEN": "a-wrong-token-for-this-cluster"}):
        out = _worker(cluster, {**env, **extra})
        assert out.returncode == 1
        assert "could not join the scheduler" in out.stderr
        assert "authentication failed" in out.stderr


def test_a_worker_with_the_token_joins(client: Client, cluster: LocalCluster) -> None:
    before = len(client.scheduler_info()["workers"])
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "worker", cluster.scheduler_address,
                             "--no-nanny", "--name", "with-token"], env=token_env(cluster))
    try:
        client.wait_for_workers(before + 1, timeout=30)
        assert client.submit(sum, [4, 5], workers=["with-token"]).result(timeout=30) == 9
    finally:
        proc.terminate()
        proc.wait(30)


# -- nothing is unpickled before the handshake -------------------------------------------------


def test_pickles_sent_to_any_port_without_the_token_create_nothing(
        client: Client, tmp_path: Path) -> None:
    """To every listening port: a bare pickle; framed messages carrying it
    (no handshake); the same after a handshake with a wrong token or none.
    None of them is unpickled; the cluster keeps serving."""
    target = tmp_path / "created-by-unpickling"
    evil = Payload(pickle.dumps(MakesFile(target)))
    args = Payload(pickle.dumps(((), {})))
    messages = framed([m.Hello(m.PROTOCOL_VERSION, "client"),
                       m.Request(1, "run_on_scheduler", {"function": evil, "args": args}),
                       m.PutData(2, {"x": evil}), m.ActorCall(3, "x", "f", evil)])
    for address in ports(client):
        for token in (None, "wrong-" * 8):
            sock, end = raw_handshake(address, token)
            assert isinstance(end, hs.HandshakeFailed)
            try:
                sock.sendall(messages)
            except OSError:
                pass  # closed already: fine
            read_until_closed(sock)
            sock.close()
        for payload in (evil.data, messages, hs.MAGIC + messages):
            with socket.create_connection(host_port(address), timeout=20) as sock:
                try:
                    sock.sendall(payload)
                except OSError:
                    pass
                read_until_closed(sock)
    assert client.submit(sum, [1, 1]).result(timeout=30) == 2  # still serving
    assert not target.exists()
    # the control: the same request from a holder of the token runs (by design)
    sock, end = raw_handshake(client.scheduler_address, client.security.token)
    assert end == hs.HandshakeDone("client", True)
    sock.sendall(messages)
    assert poll_until(target.exists, timeout=20)
    sock.close()


# -- the gate and the limits ---------------------------------------------------------------------


@pytest.fixture
def small_gate() -> Iterator[None]:
    with config.set({"comm.max-unauthenticated": 2, "comm.timeouts.handshake": "1s"}):
        yield


def test_silent_connections_are_dropped_and_capped(small_gate: None) -> None:
    """Connections that never finish the handshake hold a slot for at most
    ``comm.timeouts.handshake``; past ``comm.max-unauthenticated`` of them a
    new one is refused at once, saying why; a real client gets in after."""
    from shoal.deploy.scheduler import Scheduler

    async def main() -> None:
        async with Scheduler(port=0) as s:
            host, port = host_port(s.address)
            loop = asyncio.get_running_loop()
            silent = [socket.create_connection((host, port)) for _ in range(2)]
            await asyncio.sleep(0)
            assert await loop.run_in_executor(None, poll_until, lambda: s.listener.gate.pending == 2, 10)
            with socket.create_connection((host, port), timeout=10) as third:
                reply = await loop.run_in_executor(None, read_until_closed, third)
            assert reply.startswith(hs.MAGIC) and b"too many connections" in reply
            for sock in silent:  # dropped once their time is up
                assert await loop.run_in_executor(None, read_until_closed, sock) == b""
                sock.close()
            async with Client(s.address, asynchronous=True, timeout=10) as c:
                assert await c.scheduler_info()

    asyncio.run(main())


def test_a_frame_past_the_limit_closes_only_that_connection(caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    """After the handshake frames are bounded too (``comm.max-frame-size``):
    an announced 1 TB frame closes that connection, nothing is allocated,
    and the scheduler serves the next client."""
    from shoal.deploy.scheduler import Scheduler

    async def main() -> None:
        with config.set({"comm.max-frame-size": "64MiB"}):
            async with Scheduler(port=0) as s:
                comm = await connect(s.address, timeout=10, security=s.security)
                sock = comm._sock  # type: ignore[attr-defined]
                sock.send(b"SHL1" + (1).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little"))
                for _ in range(500):
                    if comm.closed:
                        break
                    await asyncio.sleep(0.01)
                assert comm.closed
                assert [r for r in caplog.records if "exceeds the limit of 67108864" in r.message]
                async with Client(s.address, asynchronous=True, timeout=10) as c:
                    assert (await c.scheduler_info())["address"] == s.address

    asyncio.run(main())


# -- the command line ---------------------------------------------------------------------------


def test_a_scheduler_beyond_loopback_generates_a_token_file(tmp_path: Path) -> None:
    """``shoal scheduler --host 0.0.0.0`` without a token makes one, writes
    it to a 0600 file and says where; a worker given that file joins."""
    env = {**os.environ, "SHOAL_SECURITY__TOKEN_DIRECTORY": str(tmp_path)}
    env.pop("SHOAL_TOKEN", None)
    scheduler = subprocess.Popen([sys.executable, "-m", "shoal", "scheduler", "--host", "0.0.0.0",
                                  "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
    worker = None
    try:
        assert scheduler.stderr is not None
        line = ""
        for line in scheduler.stderr:
            if "generated one" in line:
                break
        (token_file,) = tmp_path.glob("scheduler-*.token")
        assert str(token_file) in line and oct(token_file.stat().st_mode & 0o777) == "0o600"
        port = int(token_file.name.split("-")[1].split(".")[0])
        address = f"tcp://127.0.0.1:{port}"
        with pytest.raises(AuthenticationError):
            Client(address, security=Security(token=False), timeout=30)
        worker = subprocess.Popen([sys.executable, "-m", "shoal", "worker", address, "--no-nanny",
                                   "--token-file", str(token_file)], env=env)
        with Client(address, security=Security(token_file=str(token_file)), timeout=30) as c:
            c.wait_for_workers(1, timeout=30)
            assert c.submit(sum, [1, 2]).result(timeout=30) == 3
    finally:
        for p in (worker, scheduler):
            if p is not None:
                p.terminate()
                p.wait(15)
        if scheduler.stderr is not None:
            scheduler.stderr.close()


def test_the_command_line_refuses_an_unsafe_token_file(tmp_path: Path) -> None:
    loose = tmp_path / "token"
    loose.write_text("x" * 40)
    loose.chmod(0o644)
    out = subprocess.run([sys.executable, "-m", "shoal", "worker", "tcp://127.0.0.1:1",
                          "--token-file", str(loose)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "chmod 600" in out.stderr
