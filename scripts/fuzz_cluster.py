"""Fuzz a running shoal cluster over real sockets, for as long as you like.

    .venv/bin/python scripts/fuzz_cluster.py                  # 2 minutes, seed 0
    .venv/bin/python scripts/fuzz_cluster.py --duration 1800 --seed 7 --workers 2
    .venv/bin/python scripts/fuzz_cluster.py --inputs 500     # a fixed number of inputs

It starts a ``LocalCluster`` (scheduler and workers as processes, invariants
checked after every step) and a working client, then sends bad input, one
connection at a time, to every port the cluster listens on:

* before authentication: random bytes; handshake records that are random,
  truncated, out of order, with huge lengths, or replayed from a real
  handshake; framed messages and bare pickles with no handshake at all;
  a handshake with a wrong token followed by framed messages;
* after authentication (a peer that holds the token but is broken):
  random bytes in place of frames; frame headers announcing huge lengths;
  random msgpack; messages of every type with random field values (typed
  as the message says, so they get past the decoder and into the
  scheduler's and workers' handlers), as a client and as a worker that
  registered with random fields; messages before ``Hello``, a second
  ``Hello``, messages of the wrong role (a worker's report sent by a
  client); and the same real messages truncated.

After every input, and before the next one, the working client must still
get a task's result from the cluster; at the end the scheduler's and
workers' log lines about closed connections are counted.  The exit code is
1 if the working client ever failed (the input that broke it is printed
with its seed, so ``--seed S --skip N`` replays it), else 0.

Payloads the fuzzer sends never unpickle into anything harmful: the
handlers may unpickle them only after authentication, and they are
pickles of plain data.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import socket
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgspec

from shoal import Client, LocalCluster
from shoal.comm import handshake as hs
from shoal.comm.codec import MessageCodec
from shoal.comm.framing import encode_frames
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload

MESSAGE_TYPES = list(m.Message.__args__)  # type: ignore[attr-defined]


# -- random values of a message's field types --------------------------------------------------


class Values:
    """Random values of msgspec types (and, now and then, of the wrong type)."""

    def __init__(self, rng: random.Random, keys: list[str]) -> None:
        self.rng = rng
        self.keys = keys  # real keys the working client uses, to hit existing records

    def scalar(self) -> Any:
        r = self.rng
        return r.choice([None, True, 0, -1, r.randrange(-(1 << 63), 1 << 63), r.random() * 1e9,
                         float("nan"), "", self.text(), b"", r.randbytes(r.randrange(40)),
                         Payload(pickle.dumps(r.randrange(100)))])

    def text(self) -> str:
        r = self.rng
        if self.keys and r.random() < 0.4:
            return r.choice(self.keys)
        return r.choice(["", "x", "\x00", "é" * r.randrange(5), "k" * r.randrange(300),
                         f"inc-{r.randrange(1000)}", "tcp://127.0.0.1:1"])

    def of(self, info: Any, depth: int = 0) -> Any:
        r = self.rng
        ti = msgspec.inspect
        if r.random() < 0.03:
            return self.scalar()  # the wrong type: the decoder must refuse it
        if isinstance(info, ti.IntType):
            if r.random() < 0.5:
                return r.randrange(1, 10)
            return r.choice([0, -1, r.randrange(-(1 << 40), 1 << 40), (1 << 63) - 1])
        if isinstance(info, ti.FloatType):
            return r.choice([0.0, -1.0, r.random() * 1e6, float("inf")])
        if isinstance(info, ti.BoolType):
            return r.random() < 0.5
        if isinstance(info, ti.StrType):
            return self.text()
        if isinstance(info, ti.BytesType):
            return r.randbytes(r.randrange(50))
        if isinstance(info, ti.NoneType):
            return None
        if isinstance(info, (ti.ListType, ti.SetType, ti.FrozenSetType, ti.VarTupleType)):
            n = 0 if depth > 3 else r.randrange(4)
            return [self.of(info.item_type, depth + 1) for _ in range(n)]
        if isinstance(info, ti.TupleType):
            return [self.of(t, depth + 1) for t in info.item_types]
        if isinstance(info, ti.DictType):
            n = 0 if depth > 3 else r.randrange(4)
            out = {}
            for _ in range(n):
                key = self.of(info.key_type, depth + 1)
                out[key if isinstance(key, (str, int, float, bytes, type(None))) else self.text()] = \
                    self.of(info.value_type, depth + 1)
            return out
        if isinstance(info, ti.UnionType):
            return self.of(r.choice(info.types), depth + 1)
        if isinstance(info, ti.StructType):
            return self.struct(info, depth + 1)
        if isinstance(info, ti.CustomType) and info.cls is Payload:
            return Payload(pickle.dumps(r.choice([None, 1, "x", [1, 2], {"a": 1}])))
        return self.scalar()

    def struct(self, info: Any, depth: int = 0) -> Any:
        fields = [self.of(f.type, depth) for f in info.fields]
        try:
            return info.cls(*fields)
        except (TypeError, ValueError):
            return info.cls(*[self.of(f.type, depth) for f in info.fields])

    def message(self) -> Any:
        """A message of a random type with random fields, that msgspec encodes."""
        while True:
            msg = self.struct(msgspec.inspect.type_info(self.rng.choice(MESSAGE_TYPES)))
            try:
                MessageCodec().encode([msg])
            except Exception:
                continue  # a value of the wrong type it cannot encode: draw again
            return msg


# -- sending ------------------------------------------------------------------------------------


def encode(msgs: list[Any]) -> bytes:
    return b"".join(bytes(memoryview(f).cast("B")) for f in encode_frames(MessageCodec().encode(msgs)))


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split("://", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)


def handshake(sock: socket.socket, token: str | None, role: str) -> bool:
    machine = hs.ClientHandshake(role, token.encode() if token else None, os.urandom(32),
                                 m.PROTOCOL_VERSION)
    sock.sendall(machine.start())
    while not machine.finished:
        data = sock.recv(machine.bytes_wanted())
        if not data:
            return False
        for event in machine.receive_data(data):
            if isinstance(event, hs.SendData):
                sock.sendall(event.data)
            elif isinstance(event, hs.HandshakeDone):
                return True
    return False


def drain(sock: socket.socket, seconds: float) -> str:
    """Read until the server closes (or ``seconds`` pass): how it ended."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return "closed"
    except TimeoutError:
        return "open"
    except OSError:
        return "reset"


class Fuzzer:
    def __init__(self, rng: random.Random, token: str, keys: list[str]) -> None:
        self.rng = rng
        self.token = token
        self.values = Values(rng, keys)
        self.replay: list[bytes] = []  # records of a real handshake, for replaying

    def attack(self, address: str, is_scheduler: bool) -> tuple[str, str]:
        """Send one bad input to ``address``; (what it was, how the connection ended)."""
        r = self.rng
        kind = r.choice(["bytes", "records", "replay", "framed-no-handshake", "pickle",
                         "wrong-token", "auth-bytes", "auth-huge", "auth-msgpack",
                         "auth-messages", "auth-messages", "auth-messages", "auth-order",
                         "auth-truncated"])
        if is_scheduler:
            role = "client" if r.random() < 0.6 else "worker"
        else:
            role = "client" if r.random() < 0.5 else "peer"
        with socket.create_connection(host_port(address), timeout=10) as sock:
            try:
                if kind.startswith("auth-"):
                    if not handshake(sock, self.token, role):
                        return kind, "refused"
                    sock.sendall(self.after_auth(kind, role, is_scheduler))
                else:
                    sock.sendall(self.before_auth(kind, sock))
            except OSError:
                return kind, "reset"
            return kind, drain(sock, 0.3)

    def before_auth(self, kind: str, sock: socket.socket) -> bytes:
        r = self.rng
        if kind == "bytes":
            return r.randbytes(r.randrange(1, 400))
        if kind == "records":
            out = b""
            for _ in range(r.randrange(1, 4)):
                body = r.randbytes(r.randrange(0, 80))
                length = r.choice([len(body), 0xFFFF, r.randrange(0x10000)])
                out += hs.MAGIC + bytes([r.randrange(256)]) + struct.pack("<H", length) + body
            return out[: r.randrange(1, len(out) + 1)]
        if kind == "replay" and self.replay:
            return b"".join(self.replay)
        if kind == "pickle":
            return pickle.dumps([1, 2, 3])
        if kind == "wrong-token":
            handshake(sock, "not-the-token-" + r.randbytes(8).hex(), "client")
            return encode([m.Hello(m.PROTOCOL_VERSION, "client"), self.values.message()])
        return encode([m.Hello(m.PROTOCOL_VERSION, "client"), self.values.message()])

    def after_auth(self, kind: str, role: str, is_scheduler: bool) -> bytes:
        r = self.rng
        hello = encode([m.Hello(m.PROTOCOL_VERSION, role, "fuzz")])
        if role == "worker":  # a worker registers (with random fields) in the same batch
            info = msgspec.inspect.type_info(m.RegisterWorker)
            register = self.values.struct(info)
            try:
                hello = encode([m.Hello(m.PROTOCOL_VERSION, role, "fuzz"), register])
            except Exception:
                pass
        if kind == "auth-bytes":
            return r.choice([b"", hello]) + r.randbytes(r.randrange(1, 300))
        if kind == "auth-huge":
            n = r.randrange(1, 5)
            lengths = [r.choice([1 << 40, 1 << 62, r.randrange(1 << 20)]) for _ in range(n)]
            return hello + b"SHL1" + struct.pack(f"<I{n}Q", n, *lengths)
        if kind == "auth-msgpack":
            fields = [self.values.scalar() for _ in range(r.randrange(5))]
            junk = msgspec.msgpack.encode([[r.choice(["req", "submit", "hello", "x"]),
                                            *[None if type(f) is Payload else f for f in fields]]])
            return hello + b"".join(bytes(f) for f in encode_frames([junk]))
        msgs = [self.values.message() for _ in range(r.randrange(1, 4))]
        try:
            if kind == "auth-order":  # no Hello first, or two of them
                return encode(msgs) if r.random() < 0.5 else hello + hello + encode(msgs)
            data = hello + encode(msgs)
        except Exception:
            return hello  # a value msgspec will not encode: nothing to send
        if kind == "auth-truncated":
            return data[: r.randrange(1, len(data))]
        return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds to run (default 120)")
    ap.add_argument("--inputs", type=int, default=0, help="stop after this many inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=0, help="skip this many inputs first (replaying)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--check-every", type=int, default=1,
                    help="check the working client after every N inputs")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, validate=True) as cluster, \
            Client(cluster, timeout=30) as good:
        futures = good.map(lambda i: i + 1, range(20), pure=False)
        assert good.gather(futures) == list(range(1, 21))
        fuzzer = Fuzzer(rng, cluster.security.token or "", [f.key for f in futures])
        # a HELLO of an earlier handshake, replayed as is
        machine = hs.ClientHandshake("client", None, os.urandom(32), m.PROTOCOL_VERSION)
        fuzzer.replay = [machine.start()]
        addresses = [cluster.scheduler_address, *good.scheduler_info()["workers"]]
        deadline = time.monotonic() + args.duration
        counts: dict[tuple[str, str], int] = {}
        i = 0
        while time.monotonic() < deadline and (not args.inputs or i < args.inputs):
            target = rng.choice(addresses)
            state = rng.getstate()
            if i < args.skip:
                kind, ended = "skipped", "-"
                fuzzer.values.message()  # keep the stream of random numbers the same
            else:
                kind, ended = fuzzer.attack(target, target == cluster.scheduler_address)
            counts[(kind, ended)] = counts.get((kind, ended), 0) + 1
            i += 1
            if i % args.check_every == 0:
                try:
                    assert good.submit(sum, [i, 1], pure=False).result(timeout=30) == i + 1
                except Exception as e:
                    print(f"FAIL after input {i} ({kind} to {target}): the working client got "
                          f"{type(e).__name__}: {e}\nreplay: --seed {args.seed} --skip {i - 1}")
                    del state
                    return 1
        logs = good.get_scheduler_logs()
        worker_logs = good.get_worker_logs()
        closed = [t for _, t in logs if "closing connection" in t or "refused" in t
                  or "handshake with" in t or "rejected a connection" in t or "error handling" in t]
        print(f"{i} inputs in {args.duration:.0f} s, seed {args.seed}; the working client kept "
              "working")
        for (kind, ended), n in sorted(counts.items()):
            print(f"  {kind:22} {ended:8} {n}")
        print(f"scheduler log lines about closed or refused connections: {len(closed)} "
              f"(it keeps the last {len(logs)} lines)")
        for address, lines in worker_logs.items():
            print(f"worker {address}: {len(lines)} log lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
