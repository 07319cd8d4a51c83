"""The handshake that opens every network connection: the protocol version,
the peer's role, and a mutual proof that both ends hold the cluster's token.
PURE: bytes in, events out (h11's style); no sockets, no clock, no randomness
(the nonces come in).

It runs before anything else crosses the connection: no framed message is
decoded, and nothing is unpickled, until it has completed.  Its records are
tiny and bounded (at most ``HEAD_SIZE + MAX_BODY`` bytes each), so an
unauthenticated peer can make us hold a few hundred bytes at most.

Wire: records ``b"SHHS" u8 kind u16 length body`` (little-endian)::

    client -> server   HELLO      u16 version, u8 role, u8 flags, nonce_c (32)
    server -> client   CHALLENGE  u16 version, u8 flags, nonce_s (32)
                    or REFUSE     u8 code, reason (utf-8)
    client -> server   RESPONSE   u8 status, proof_c (32)
    server -> client   ACCEPT     proof_s (32)
                    or REFUSE     u8 code, reason

    proof_c = HMAC-SHA256(token, b"shoal-auth client" u16 version u8 role nonce_c nonce_s)
    proof_s = HMAC-SHA256(token, b"shoal-auth server" u16 version u8 role nonce_c nonce_s)

Rules:
1. The client proves first, over a nonce the server just chose, so a
   recorded handshake cannot be replayed; the server proves second, over a
   nonce the client just chose, so a client is never fooled by a server
   without the token.  Different labels make the two proofs different
   (nothing can be reflected back).  Proofs are compared in constant time.
2. A side that holds a token insists that the other proves it holds the
   same one: a client with a token refuses a server without one (it could
   be anybody listening on that port).  Both without a token: the
   handshake only checks the version and the role (loopback use).
3. The client may send framed messages right after its RESPONSE (its
   ``Hello``), but reads nothing framed before the ACCEPT proved the
   server; the server reads nothing framed before the RESPONSE proved the
   client.  Each machine says how many bytes it wants next
   (``bytes_wanted``), so the I/O shell never reads past the handshake.
4. Anything unexpected (a wrong magic, an unknown record, a record out of
   order, a body of the wrong size) fails the handshake with a
   ``HandshakeFailed`` event; after ``HandshakeDone`` or ``HandshakeFailed``
   the machine takes no more data.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

MAGIC = b"SHHS"
_HEAD = struct.Struct("<4sBH")
HEAD_SIZE = _HEAD.size  # 7
#: the largest record body either side accepts
MAX_BODY = 256
NONCE_SIZE = 32
PROOF_SIZE = 32

# record kinds
HELLO, CHALLENGE, RESPONSE, ACCEPT, REFUSE = 1, 2, 3, 4, 5
_KIND_NAMES = {HELLO: "HELLO", CHALLENGE: "CHALLENGE", RESPONSE: "RESPONSE", ACCEPT: "ACCEPT",
               REFUSE: "REFUSE"}

#: roles a peer may claim, and their codes on the wire
ROLES = {"client": 1, "worker": 2, "peer": 3}
_ROLE_NAMES = {v: k for k, v in ROLES.items()}

# HELLO / CHALLENGE flags
HAS_TOKEN = 1
# RESPONSE status
PROVED, NO_TOKEN, SERVER_HAS_NO_TOKEN = 0, 1, 2
# REFUSE codes
REFUSED, AUTH_FAILED, BUSY, WRONG_VERSION = 0, 1, 2, 3

_HELLO = struct.Struct(f"<HBB{NONCE_SIZE}s")
_CHALLENGE = struct.Struct(f"<HB{NONCE_SIZE}s")
_RESPONSE = struct.Struct(f"<B{PROOF_SIZE}s")
_VERSION_ROLE = struct.Struct("<HB")
_NO_PROOF = bytes(PROOF_SIZE)


# -- events ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendData:
    """Bytes for the peer, to be written in order."""

    data: bytes


@dataclass(frozen=True)
class HandshakeDone:
    """The handshake succeeded: framed messages may flow.  ``authenticated``:
    both sides proved the token (False only when neither has one)."""

    role: str
    authenticated: bool


@dataclass(frozen=True)
class HandshakeFailed:
    """The handshake failed; the connection must be closed.  ``auth``: the
    failure is about the token (as opposed to a protocol error or a refusal
    for another reason); ``by_peer``: the peer refused us (its REFUSE)."""

    reason: str
    auth: bool = False
    by_peer: bool = False


Event = SendData | HandshakeDone | HandshakeFailed


# -- records -------------------------------------------------------------------------


def encode_record(kind: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"handshake record body of {len(body)} bytes (limit {MAX_BODY})")
    return _HEAD.pack(MAGIC, kind, len(body)) + body


def refuse_record(code: int, reason: str) -> bytes:
    """A REFUSE record (the reason cut to fit)."""
    text = reason.encode("utf-8", "replace")[: MAX_BODY - 1]
    return encode_record(REFUSE, bytes([code]) + text)


def proof(token: bytes, label: bytes, version: int, role: int, nonce_c: bytes, nonce_s: bytes
          ) -> bytes:
    msg = label + _VERSION_ROLE.pack(version, role) + nonce_c + nonce_s
    return hmac.new(token, msg, hashlib.sha256).digest()


_CLIENT_LABEL = b"shoal-auth client"
_SERVER_LABEL = b"shoal-auth server"


class _RecordReader:
    """Incremental parser of records; bounded, fails on the first bad byte."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def wanted(self) -> int:
        """Bytes that complete the record being read (at least 1)."""
        n = len(self._buf)
        if n < HEAD_SIZE:
            return HEAD_SIZE - n
        _, _, length = _HEAD.unpack_from(self._buf)
        return HEAD_SIZE + int(length) - n

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_record(self) -> tuple[int, bytes] | None:
        """The next whole record, or None until more bytes come; raises
        ``ValueError`` naming what is wrong as soon as a byte is."""
        buf = self._buf
        head = bytes(buf[:4])
        if head != MAGIC[: len(head)]:
            raise ValueError(f"not a shoal handshake (first bytes {bytes(buf[:8])!r})")
        if len(buf) < HEAD_SIZE:
            return None
        _, kind, length = _HEAD.unpack_from(buf)
        if kind not in _KIND_NAMES:
            raise ValueError(f"unknown handshake record kind {kind}")
        if length > MAX_BODY:
            raise ValueError(f"handshake record of {length} bytes (limit {MAX_BODY})")
        end = HEAD_SIZE + length
        if len(buf) < end:
            return None
        record = (kind, bytes(buf[HEAD_SIZE:end]))
        del buf[:end]
        return record

    def take_rest(self) -> bytes:
        rest, self._buf = bytes(self._buf), bytearray()
        return rest


class _Machine:
    """What both sides share: the record reader, the end states."""

    def __init__(self, token: bytes | None, version: int) -> None:
        if token is not None and not token:
            raise ValueError("an empty token is no token: pass None")
        self.token = token
        self.version = version
        self._reader = _RecordReader()
        self.state = "start"
        #: bytes received after the last handshake record (framed data the
        #: shell read too early); empty when the shell honours bytes_wanted()
        self.trailing = b""

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def bytes_wanted(self) -> int:
        """How many bytes to read next, at most: never past the handshake."""
        return 0 if self.finished else self._reader.wanted()

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; the events they cause, in order."""
        if self.finished:
            raise RuntimeError(f"the handshake is {self.state}: it takes no more data")
        events: list[Event] = []
        self._reader.feed(data)
        while not self.finished:
            try:
                record = self._reader.next_record()
            except ValueError as e:
                return events + self._fail(str(e))
            if record is None:
                break
            events += self._record(*record)
        if self.state in ("done", "failed"):  # (a handler above may have finished it)
            self.trailing = self._reader.take_rest()
        return events

    def _record(self, kind: int, body: bytes) -> list[Event]:
        raise NotImplementedError

    def _fail(self, reason: str, auth: bool = False, by_peer: bool = False) -> list[Event]:
        self.state = "failed"
        return [HandshakeFailed(reason, auth, by_peer)]

    def _unexpected(self, kind: int, expected: str) -> list[Event]:
        return self._fail(f"expected {expected} in the handshake, got {_KIND_NAMES[kind]}")


class ClientHandshake(_Machine):
    """The connecting side.  ``start()`` gives the HELLO to send; then feed
    what the server sends to ``receive_data``."""

    def __init__(self, role: str, token: bytes | None, nonce: bytes, version: int) -> None:
        super().__init__(token, version)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLES)}")
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce has {NONCE_SIZE} bytes")
        self.role = role
        self.nonce = nonce
        self._server_nonce = b""

    def start(self) -> bytes:
        if self.state != "start":
            raise RuntimeError("the handshake has started already")
        self.state = "hello-sent"
        flags = HAS_TOKEN if self.token is not None else 0
        return encode_record(HELLO, _HELLO.pack(self.version, ROLES[self.role], flags, self.nonce))

    def _record(self, kind: int, body: bytes) -> list[Event]:
        if kind == REFUSE:
            return _refused(self, body)
        if self.state == "hello-sent":
            if kind != CHALLENGE:
                return self._unexpected(kind, "CHALLENGE")
            return self._challenge(body)
        if self.state == "response-sent":
            if kind != ACCEPT:
                return self._unexpected(kind, "ACCEPT")
            return self._accept(body)
        return self._unexpected(kind, "nothing")

    def _challenge(self, body: bytes) -> list[Event]:
        if len(body) != _CHALLENGE.size:
            return self._fail(f"a CHALLENGE of {len(body)} bytes")
        version, flags, nonce_s = _CHALLENGE.unpack(body)
        if flags & ~HAS_TOKEN:
            return self._fail(f"unknown CHALLENGE flags {flags:#x}")
        if version != self.version:
            return self._fail(f"the server speaks protocol version {version}, this process "
                              f"{self.version}: run the same version of shoal on both")
        server_has_token = bool(flags & HAS_TOKEN)
        self._server_nonce = nonce_s
        if server_has_token and self.token is None:
            self.state = "failed"
            return [SendData(encode_record(RESPONSE, _RESPONSE.pack(NO_TOKEN, _NO_PROOF))),
                    HandshakeFailed("authentication failed: wrong or missing token (the server "
                                    "requires a token and none was given)", auth=True)]
        if not server_has_token and self.token is not None:
            self.state = "failed"
            return [SendData(encode_record(RESPONSE, _RESPONSE.pack(SERVER_HAS_NO_TOKEN, _NO_PROOF))),
                    HandshakeFailed("authentication failed: the server uses no token, so it "
                                    "cannot prove it holds this one (give it the same token, "
                                    "or connect without one)", auth=True)]
        if self.token is None:
            self.state = "response-sent"
            return [SendData(encode_record(RESPONSE, _RESPONSE.pack(NO_TOKEN, _NO_PROOF)))]
        mine = proof(self.token, _CLIENT_LABEL, self.version, ROLES[self.role], self.nonce, nonce_s)
        self.state = "response-sent"
        return [SendData(encode_record(RESPONSE, _RESPONSE.pack(PROVED, mine)))]

    def _accept(self, body: bytes) -> list[Event]:
        if len(body) != PROOF_SIZE:
            return self._fail(f"an ACCEPT of {len(body)} bytes")
        if self.token is not None:
            expected = proof(self.token, _SERVER_LABEL, self.version, ROLES[self.role], self.nonce,
                             self._server_nonce)
            if not hmac.compare_digest(expected, body):
                return self._fail("authentication failed: the server's proof does not match this "
                                  "token (is something else answering at that address?)", auth=True)
        self.state = "done"
        return [HandshakeDone(self.role, self.token is not None)]


class ServerHandshake(_Machine):
    """The accepting side.  Feed what the client sends to ``receive_data``;
    ``roles``: the roles this listener serves."""

    def __init__(self, token: bytes | None, nonce: bytes, version: int,
                 roles: frozenset[str] | set[str] = frozenset(ROLES)) -> None:
        super().__init__(token, version)
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce has {NONCE_SIZE} bytes")
        self.nonce = nonce
        self.roles = frozenset(roles)
        self.role = ""
        self._role_code = 0
        self._client_nonce = b""
        self.state = "wait-hello"

    def _record(self, kind: int, body: bytes) -> list[Event]:
        if self.state == "wait-hello":
            if kind != HELLO:
                return self._unexpected(kind, "HELLO")
            return self._hello(body)
        if self.state == "wait-response":
            if kind != RESPONSE:
                return self._unexpected(kind, "RESPONSE")
            return self._response(body)
        return self._unexpected(kind, "nothing")

    def _refuse(self, code: int, reason: str, auth: bool = False) -> list[Event]:
        self.state = "failed"
        return [SendData(refuse_record(code, reason)), HandshakeFailed(reason, auth)]

    def _hello(self, body: bytes) -> list[Event]:
        if len(body) != _HELLO.size:
            return self._fail(f"a HELLO of {len(body)} bytes")
        version, role_code, flags, nonce_c = _HELLO.unpack(body)
        if flags & ~HAS_TOKEN:
            return self._fail(f"unknown HELLO flags {flags:#x}")
        if version != self.version:
            return self._refuse(WRONG_VERSION, f"protocol version {version} is not {self.version}: "
                                               "run the same version of shoal on both sides")
        role = _ROLE_NAMES.get(role_code)
        if role is None or role not in self.roles:
            return self._refuse(REFUSED, f"this server does not accept role "
                                         f"{role or role_code!r}")
        self.role, self._role_code, self._client_nonce = role, role_code, nonce_c
        self.state = "wait-response"
        flags = HAS_TOKEN if self.token is not None else 0
        return [SendData(encode_record(CHALLENGE, _CHALLENGE.pack(self.version, flags, self.nonce)))]

    def _response(self, body: bytes) -> list[Event]:
        if len(body) != _RESPONSE.size:
            return self._fail(f"a RESPONSE of {len(body)} bytes")
        status, theirs = _RESPONSE.unpack(body)
        if status == SERVER_HAS_NO_TOKEN:
            return self._fail("the client holds a token and this server none: it refused us",
                              auth=True)
        if self.token is None:
            if status != NO_TOKEN:
                return self._fail(f"RESPONSE status {status} to a server without a token")
            self.state = "done"
            return [SendData(encode_record(ACCEPT, _NO_PROOF)), HandshakeDone(self.role, False)]
        if status != PROVED:
            return self._refuse(AUTH_FAILED, "authentication failed: wrong or missing token "
                                             "(the client gave none)", auth=True)
        expected = proof(self.token, _CLIENT_LABEL, self.version, self._role_code,
                         self._client_nonce, self.nonce)
        if not hmac.compare_digest(expected, theirs):
            return self._refuse(AUTH_FAILED, "authentication failed: wrong or missing token",
                                auth=True)
        mine = proof(self.token, _SERVER_LABEL, self.version, self._role_code, self._client_nonce,
                     self.nonce)
        self.state = "done"
        return [SendData(encode_record(ACCEPT, mine)), HandshakeDone(self.role, True)]


def _refused(machine: _Machine, body: bytes) -> list[Event]:
    code = body[0] if body else REFUSED
    reason = body[1:].decode("utf-8", "replace") or "refused"
    return machine._fail(reason, auth=code == AUTH_FAILED, by_peer=True)
