"""A client whose scheduler connection breaks (not its process) reconnects
and keeps its futures; past the scheduler's grace period its futures are
released (docs/failures.md).  The connection is broken by a TCP proxy
between the client and the scheduler, or by shutting the client's socket
down from inside."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import shoal
from shoal import Client, LocalCluster
from shoal.errors import FutureLost

pytestmark = pytest.mark.timeout(90)


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` breaks every
    connection through it, ``block()`` hangs up on new ones until
    ``unblock()``."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("://", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.blocked = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked:
                down.close()
                continue
            up = socket.create_connection(self.target)
            with self.lock:
                self.pairs.append((down, up))
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def block(self) -> None:
        self.blocked = True
        self.cut()

    def unblock(self) -> None:
        self.blocked = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def slow_inc(x: int, delay: float = 0.3) -> int:
    time.sleep(delay)
    return x + 1


def big(x: int) -> list[int]:
    return [x] * 10_000  # too big to travel with the "done" notice


@pytest.fixture
def proxied(cluster: LocalCluster) -> Iterator[tuple[Proxy, Client]]:
    proxy = Proxy(cluster.scheduler_address)
    try:
        with Client(proxy.address, timeout=10, security=cluster.security) as client:
            yield proxy, client
    finally:
        proxy.close()


def test_futures_survive_a_broken_connection(proxied, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Tasks finish while the client is cut off (their "done" notices are
    lost), others are submitted and one is released meanwhile: after the
    reconnection every future has its right result, under the same id."""
    caplog.set_level(logging.WARNING, logger="shoal.client")
    proxy, client = proxied
    done = client.map(big, range(5))
    client.gather(done)
    running = client.map(slow_inc, range(6))
    dropped = client.submit(big, 99)
    dropped.result(timeout=10)
    dropped_key = dropped.key
    old_id = client.id
    proxy.cut()
    during = client.map(slow_inc, range(100, 104), delay=0.0)  # queued while cut off
    del dropped
    shoal.wait(running + during, timeout=30)
    assert client.gather(running) == [x + 1 for x in range(6)]
    assert client.gather(during) == [x + 1 for x in range(100, 104)]
    assert client.gather(done) == [[x] * 10_000 for x in range(5)]
    assert client.id == old_id
    assert client.status == "running"
    assert any("reconnected" in r.getMessage() for r in caplog.records)
    # the release sent while cut off reached the scheduler
    wait_until = time.monotonic() + 10
    while dropped_key in client.who_has() and client.who_has()[dropped_key]:
        assert time.monotonic() < wait_until, "the released key is still held"
        time.sleep(0.05)
    assert client.submit(slow_inc, 1, delay=0.0, pure=False).result(timeout=10) == 2


def test_closing_the_socket_from_inside(cluster: LocalCluster) -> None:
    """The same, with the client's own socket shut down (no proxy)."""
    with Client(cluster, timeout=10) as client:
        fut = client.submit(slow_inc, 5)
        comm = client.scheduler_comm
        comm._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        assert fut.result(timeout=30) == 6
        assert client.scheduler_comm is not comm
        assert client.scheduler_info()["workers"]


@pytest.fixture
def short_grace() -> Iterator[tuple[LocalCluster, Proxy]]:
    with shoal.config.set({"scheduler.client-grace-period": "1s"}), \
            LocalCluster(n_workers=1, threads_per_worker=1) as cluster:
        proxy = Proxy(cluster.scheduler_address)
        try:
            yield cluster, proxy
        finally:
            proxy.close()


def test_past_the_grace_period_futures_are_released_and_fail(short_grace) -> None:  # type: ignore[no-untyped-def]
    cluster, proxy = short_grace
    with Client(proxy.address, timeout=10, security=cluster.security) as client, Client(cluster) as observer:
        held = client.submit(big, 7)
        held.result(timeout=10)
        assert observer.who_has()[held.key]
        old_id = client.id
        proxy.block()
        deadline = time.monotonic() + 20
        while held.key in observer.who_has():
            assert time.monotonic() < deadline, "the departed client's key was never released"
            time.sleep(0.05)
        proxy.unblock()
        with pytest.raises(FutureLost, match="grace"):
            held.result(timeout=30)
        assert client.id != old_id
        assert client.submit(big, 8).result(timeout=10) == [8] * 10_000


def test_a_client_that_cannot_reconnect_closes(short_grace) -> None:  # type: ignore[no-untyped-def]
    cluster, proxy = short_grace
    with shoal.config.set({"client.reconnect-timeout": "1s"}):
        client = Client(proxy.address, timeout=10, security=cluster.security)
    try:
        pending = client.submit(slow_inc, 1, delay=30.0)
        proxy.block()
        with pytest.raises(FutureLost, match="reconnect"):
            pending.result(timeout=30)
        assert client.status == "closed"
    finally:
        client.close()


def test_a_key_released_as_the_connection_breaks_can_be_wanted_again(proxied) -> None:  # type: ignore[no-untyped-def]
    """The release of a key goes out just as the connection breaks, so its
    answer (ReleaseHandled) never comes; the same call submitted again
    after that must still finish (news about the key is not taken for news
    about the released future forever)."""
    proxy, client = proxied
    for i in range(5):
        f = client.submit(big, 1000 + i)
        assert f.result(timeout=10)[0] == 1000 + i
        del f
        time.sleep(0.01 * i)  # the release on its way, arrived, or answered
        proxy.cut()
        again = client.submit(big, 1000 + i)
        assert again.result(timeout=30)[0] == 1000 + i
        del again
