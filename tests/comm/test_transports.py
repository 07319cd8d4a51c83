"""Real transports: TCP on loopback and in-process, with the handshake."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest

from shoal.comm.core import accept_greeting, connect_and_greet, listen
from shoal.errors import RemoteProtocolError
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads

pytestmark = pytest.mark.timeout(30)


class EchoListener:
    """A listener that greets and echoes every batch back; ``stop()`` also
    closes the connections it accepted."""

    def __init__(self, listener: Any, comms: list[Any], tasks: set[Any]) -> None:
        self.listener, self.comms, self.tasks = listener, comms, tasks
        self.address = listener.address

    def stop(self) -> None:
        self.listener.stop()
        for c in self.comms:
            c.abort(None)


async def echo_server(address: str) -> EchoListener:
    tasks: set[Any] = set()
    comms: list[Any] = []

    def on_connection(comm: Any) -> None:
        comms.append(comm)
        async def greet() -> None:
            try:
                await accept_greeting(comm, timeout=5)
            except Exception:
                comm.abort(None)
                return
            comm.send([m.Welcome(m.PROTOCOL_VERSION, "echo")])
            comm.start(lambda msgs: comm.send(msgs))

        t = asyncio.ensure_future(greet())
        tasks.add(t)

    listener = listen(address, on_connection)
    await listener.start()
    return EchoListener(listener, comms, tasks)


@pytest.fixture(params=["tcp://127.0.0.1:0", "inproc://"])
def address(request: Any) -> str:
    return str(request.param)


def test_handshake_and_echo_with_large_array(address: str) -> None:
    async def main() -> None:
        listener = await echo_server(address)
        comm, welcome = await connect_and_greet(listener.address, "client", timeout=5)
        assert welcome.id == "echo"
        arr = np.random.default_rng(0).random(2_000_000)
        comm.send([m.PutData(1, {"a": dumps(arr)}), m.FreeKeys(["x"])])
        msgs = await comm.recv(10)
        assert isinstance(msgs[1], m.FreeKeys)
        assert (loads(msgs[0].data["a"]) == arr).all()
        await comm.close()
        listener.stop()

    asyncio.run(main())


def test_connecting_to_a_closed_port_fails_quickly_with_oserror() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await connect_and_greet(f"tcp://127.0.0.1:{port}", "client", timeout=2)
        assert loop.time() - t < 2
        with pytest.raises((OSError, TimeoutError)):
            await connect_and_greet(f"tcp://127.0.0.1:{port}", "client", timeout=0.5, retry=True)

    asyncio.run(main())


def test_a_silent_server_times_out_the_handshake() -> None:
    async def main() -> None:
        writers: list[Any] = []
        server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError, match="handshake"):
            await connect_and_greet(f"tcp://127.0.0.1:{port}", "client", timeout=0.3)
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_garbage_closes_only_that_connection() -> None:
    async def main() -> None:
        listener = await echo_server("tcp://127.0.0.1:0")
        good, _ = await connect_and_greet(listener.address, "client", timeout=5)
        port = int(listener.address.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
        writer.close()
        await writer.wait_closed()
        good.send([m.ReleaseKeys(["still-works"])])
        assert (await good.recv(5))[0].keys == ["still-works"]
        await good.close()
        listener.stop()

    asyncio.run(main())


def test_wrong_protocol_version_is_rejected() -> None:
    async def main() -> None:
        got: list[Exception] = []

        def on_connection(comm: Any) -> None:
            async def greet() -> None:
                try:
                    await accept_greeting(comm, timeout=5)
                except RemoteProtocolError as e:
                    got.append(e)

            greeting.append(asyncio.ensure_future(greet()))

        greeting: list[Any] = []
        listener = listen("tcp://127.0.0.1:0", on_connection)
        await listener.start()
        from shoal.comm.core import connect

        comm = await connect(listener.address, timeout=5)
        comm.send([m.Hello(999, "client")])
        reply = await comm.recv(5)
        assert isinstance(reply[0], m.Rejected) and "999" in reply[0].reason
        assert got and "999" in str(got[0])
        comm.abort()
        await asyncio.sleep(0.05)  # let the server side see the close
        listener.stop()

    asyncio.run(main())


def test_tcp_send_from_another_thread_keeps_order() -> None:
    """A client's calling thread writes to the socket itself while the event
    loop's thread writes too: every batch arrives whole, in each sender's
    order."""
    import threading

    async def main() -> None:
        listener = await echo_server("tcp://127.0.0.1:0")
        comm, _ = await connect_and_greet(listener.address, "client", timeout=5)
        got: list[Any] = []
        done = asyncio.Event()
        n = 300

        def on_messages(msgs: list[Any]) -> None:
            got.extend(msgs)
            if len(got) >= 2 * n:
                done.set()

        comm.start(on_messages)

        def from_thread() -> None:
            for i in range(n):
                comm.send([m.ReleaseKeys([f"t{i}"])])

        t = threading.Thread(target=from_thread)
        t.start()
        for i in range(n):
            comm.send([m.ReleaseKeys([f"l{i}"])])
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.to_thread(t.join)
        await asyncio.wait_for(done.wait(), 10)
        keys = [msg.keys[0] for msg in got]
        assert [k for k in keys if k[0] == "t"] == [f"t{i}" for i in range(n)]
        assert [k for k in keys if k[0] == "l"] == [f"l{i}" for i in range(n)]
        await comm.close()
        listener.stop()

    asyncio.run(main())


def test_requests_from_another_thread_get_their_answers_or_fail_on_close() -> None:
    """``request_from_thread``: a non-loop thread writes a request itself; the
    answer (matched by id) resolves its future on the loop thread; a
    connection that breaks fails the requests still waiting."""
    import concurrent.futures

    from shoal.comm.pool import ConnectionPool
    from shoal.errors import CommClosedError

    async def main() -> None:
        listener = await echo_server("tcp://127.0.0.1:0")
        pool = ConnectionPool("client", "test", connect_timeout=5)
        await pool.connection(listener.address)
        conn = pool.open_connection(listener.address)
        assert conn is not None

        def from_thread() -> list[Any]:
            futs = [conn.request_from_thread(m.GetData(pool.next_id(), [f"k{i}"], "")) for i in range(50)]
            return [f.result(timeout=10) for f in futs]

        answers = await asyncio.to_thread(from_thread)
        assert [a.keys for a in answers] == [[f"k{i}"] for i in range(50)]
        assert not conn.pending

        # a server that never answers, then goes away
        silent = await echo_server("tcp://127.0.0.1:0")
        await pool.connection(silent.address)
        quiet = pool.open_connection(silent.address)
        assert quiet is not None
        for c in silent.comms:
            c._on_messages = lambda msgs: None  # swallow instead of echoing
        waiting = await asyncio.to_thread(quiet.request_from_thread, m.GetData(pool.next_id(), ["x"], ""))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        silent.stop()
        with pytest.raises(CommClosedError):
            await asyncio.wait_for(asyncio.wrap_future(waiting), 10)
        assert pool.open_connection(silent.address) is None  # closed: use the loop's path
        late = quiet.request_from_thread(m.GetData(pool.next_id(), ["y"], ""))
        with pytest.raises(CommClosedError):
            late.result(timeout=1)
        assert isinstance(late, concurrent.futures.Future)
        pool.close()
        listener.stop()

    asyncio.run(main())


def test_large_frames_arrive_intact_in_a_process_without_numpy() -> None:
    """A worker that has not imported numpy receives large frames into an
    anonymous mapping of its own (shoal.comm.tcp.alloc_frame)."""
    import subprocess
    import sys

    code = """
import asyncio, os, sys
from shoal.comm.core import accept_greeting, connect_and_greet, listen
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, loads

async def main():
    def on_connection(comm):
        async def greet():
            await accept_greeting(comm, timeout=5)
            comm.send([m.Welcome(m.PROTOCOL_VERSION, "echo")])
            comm.start(lambda msgs: comm.send(msgs))
        asyncio.ensure_future(greet())
    listener = listen("tcp://127.0.0.1:0", on_connection)
    await listener.start()
    comm, _ = await connect_and_greet(listener.address, "client", timeout=5)
    blob = bytearray(os.urandom(1 << 20) * 24)  # 24 MiB: a frame of its own
    comm.send([m.PutData(1, {"a": dumps(blob)})])
    msgs = await comm.recv(20)
    assert loads(msgs[0].data["a"]) == blob
    await comm.close()
    listener.stop()

asyncio.run(main())
assert "numpy" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("reads", [0, 32768])
def test_a_peer_that_stops_reading_is_disconnected_and_others_are_served(reads: int) -> None:
    """The send queue is bounded (``comm.send-queue.*``): a peer that stops
    reading (``reads`` 0), or reads a trickle (32 KiB every 50 ms or more: under
    the 1 MiB a stall timeout asks for), while messages keep coming is cut
    once the stall timeout passes, with a log line; what waited for it is
    freed, and a peer that reads is still served."""
    from shoal import config

    limit, stall, pause, size = 1 << 20, 1.0, 0.05, 1 << 20

    async def main() -> None:
        listener = await echo_server("tcp://127.0.0.1:0")
        stuck, _ = await connect_and_greet(listener.address, "client", timeout=5)
        asyncio.get_running_loop().remove_reader(stuck._fd)  # this peer reads no more by itself
        while len(listener.comms) < 1:
            await asyncio.sleep(0.01)
        server_side = listener.comms[0]
        payload = m.PutData(1, {"a": dumps(np.zeros(size, dtype=np.uint8))})
        most_queued = 0
        for _ in range(int(10 * stall / pause)):
            if server_side.closed:
                break
            server_side.send([payload])
            most_queued = max(most_queued, server_side.queued_bytes)
            if reads:
                try:
                    stuck._sock.recv(reads)  # a trickle
                except BlockingIOError:
                    pass
            await asyncio.sleep(pause)
        assert server_side.closed
        assert "has read next to nothing" in str(server_side.close_reason)
        assert server_side.queued_bytes == 0  # dropped, not kept
        # at most what arrived during one stall timeout beyond the limit
        assert most_queued <= limit + (stall / pause + 2) * (size + 4096)
        good, _ = await connect_and_greet(listener.address, "client", timeout=5)
        good.send([m.ReleaseKeys(["still-works"])])
        assert (await good.recv(5))[0].keys == ["still-works"]
        await good.close()
        stuck.abort(None)
        listener.stop()

    with config.set({"comm.send-queue.limit": limit, "comm.send-queue.stall-timeout": stall}):
        asyncio.run(main())
