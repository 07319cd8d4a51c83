"""The handshake state machines, directly: the version, the role and the
mutual proof of the token, bytes in and events out, no sockets.

``pair`` wires a client machine to a server machine in memory (h11's
``ConnectionPair``), delivering what each sends to the other in chunks of
any size.  Hypothesis throws truncated, corrupted, replayed and random
records at both sides: every outcome is one of the three events, never an
exception, and nothing is ever accepted without the token.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.comm import handshake as hs

VERSION = 7
TOKEN = b"the-cluster-token-0123456789abcdef"


def nonce(i: int) -> bytes:
    return bytes([i]) * hs.NONCE_SIZE


def deliver(machine: hs._Machine, data: bytes, chunk: int = 0) -> list[hs.Event]:
    """Feed ``data`` as the I/O shell would: never more than the machine wants."""
    events: list[hs.Event] = []
    view = memoryview(data)
    while view.nbytes and not machine.finished:
        n = min(machine.bytes_wanted(), view.nbytes)
        if chunk:
            n = min(n, chunk)
        events += machine.receive_data(bytes(view[:n]))
        view = view[n:]
    return events


def sent(events: list[hs.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, hs.SendData))


def outcome(events: list[hs.Event]) -> hs.Event | None:
    ends = [e for e in events if not isinstance(e, hs.SendData)]
    assert len(ends) <= 1
    return ends[0] if ends else None


def pair(client_token: bytes | None, server_token: bytes | None, role: str = "client",
         roles: frozenset[str] = frozenset(hs.ROLES), chunk: int = 0
         ) -> tuple[hs.Event | None, hs.Event | None]:
    """Run a whole handshake in memory; (the client's outcome, the server's)."""
    client = hs.ClientHandshake(role, client_token, nonce(1), VERSION)
    server = hs.ServerHandshake(server_token, nonce(2), VERSION, roles)
    to_server = client.start()
    client_end = server_end = None
    while to_server and not (client_end and server_end):
        events = deliver(server, to_server, chunk)
        server_end = server_end or outcome(events)
        to_client = sent(events)
        if not to_client:
            break
        events = deliver(client, to_client, chunk)
        client_end = client_end or outcome(events)
        to_server = sent(events)
    return client_end, server_end


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_the_same_token_authenticates_both_sides(chunk: int) -> None:
    client, server = pair(TOKEN, TOKEN, "worker", chunk=chunk)
    assert client == hs.HandshakeDone("worker", True)
    assert server == hs.HandshakeDone("worker", True)


def test_no_token_on_either_side_only_checks_version_and_role() -> None:
    assert pair(None, None) == (hs.HandshakeDone("client", False), hs.HandshakeDone("client", False))


def test_a_client_without_the_token_is_refused_and_told_why() -> None:
    client, server = pair(None, TOKEN)
    assert isinstance(client, hs.HandshakeFailed) and client.auth
    assert "wrong or missing token" in client.reason and "none was given" in client.reason
    assert isinstance(server, hs.HandshakeFailed) and server.auth and "gave none" in server.reason


def test_a_wrong_token_is_refused_by_the_server_with_a_refuse_record() -> None:
    client, server = pair(b"another-token-another-token-xx", TOKEN)
    assert isinstance(server, hs.HandshakeFailed) and server.auth
    assert isinstance(client, hs.HandshakeFailed) and client.auth and client.by_peer
    assert client.reason == "authentication failed: wrong or missing token"


def test_a_client_with_a_token_refuses_a_server_without_one() -> None:
    """Anybody could be listening on that port: a server that cannot prove
    the token is not trusted with the client's pickles."""
    client, server = pair(TOKEN, None)
    assert isinstance(client, hs.HandshakeFailed) and client.auth and "uses no token" in client.reason
    assert isinstance(server, hs.HandshakeFailed) and server.auth


def test_a_server_that_forges_its_proof_is_refused() -> None:
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    events = deliver(server, client.start())
    events = deliver(client, sent(events))
    deliver(server, sent(events))  # the server accepts the proof...
    forged = hs.encode_record(hs.ACCEPT, b"\x00" * hs.PROOF_SIZE)  # ...an impostor answers instead
    end = outcome(deliver(client, forged))
    assert isinstance(end, hs.HandshakeFailed) and end.auth and "proof" in end.reason


def test_a_recorded_response_cannot_be_replayed() -> None:
    """The proof covers the server's fresh nonce: the same RESPONSE sent to
    a server that chose another nonce is refused."""
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    first = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    hello = client.start()
    response = sent(deliver(client, sent(deliver(first, hello))))
    assert outcome(deliver(first, response)) == hs.HandshakeDone("client", True)
    replayed = hs.ServerHandshake(TOKEN, nonce(3), VERSION)
    deliver(replayed, hello)
    end = outcome(deliver(replayed, response))
    assert isinstance(end, hs.HandshakeFailed) and end.auth


def test_proofs_bind_the_role_and_the_direction() -> None:
    p = hs.proof(TOKEN, b"shoal-auth client", VERSION, 1, nonce(1), nonce(2))
    assert p != hs.proof(TOKEN, b"shoal-auth client", VERSION, 2, nonce(1), nonce(2))
    assert p != hs.proof(TOKEN, b"shoal-auth server", VERSION, 1, nonce(1), nonce(2))
    assert p != hs.proof(TOKEN, b"shoal-auth client", VERSION + 1, 1, nonce(1), nonce(2))


def test_another_protocol_version_is_refused_with_a_reason() -> None:
    client = hs.ClientHandshake("client", None, nonce(1), VERSION + 1)
    server = hs.ServerHandshake(None, nonce(2), VERSION)
    events = deliver(server, client.start())
    end = outcome(events)
    assert isinstance(end, hs.HandshakeFailed) and not end.auth and "version" in end.reason
    back = outcome(deliver(client, sent(events)))
    assert isinstance(back, hs.HandshakeFailed) and back.by_peer and "version 8 is not 7" in back.reason


def test_a_role_the_listener_does_not_serve_is_refused() -> None:
    client, server = pair(TOKEN, TOKEN, "worker", roles=frozenset({"client", "peer"}))
    assert isinstance(client, hs.HandshakeFailed) and client.by_peer and "'worker'" in client.reason
    assert isinstance(server, hs.HandshakeFailed)


def test_the_server_never_wants_bytes_past_the_handshake() -> None:
    """What follows the RESPONSE (the client's first framed messages) is
    left unread for the frame decoder."""
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    response = sent(deliver(client, sent(deliver(server, client.start()))))
    framed = b"SHL1" + b"\x01" * 50
    assert outcome(deliver(server, response + framed)) == hs.HandshakeDone("client", True)
    assert server.bytes_wanted() == 0
    with pytest.raises(RuntimeError):
        server.receive_data(framed)


def test_bytes_read_too_far_are_kept_for_the_caller() -> None:
    client = hs.ClientHandshake("client", None, nonce(1), VERSION)
    server = hs.ServerHandshake(None, nonce(2), VERSION)
    response = sent(deliver(client, sent(deliver(server, client.start()))))
    events = server.receive_data(response + b"SHL1rest")
    assert outcome(events) == hs.HandshakeDone("client", False)
    assert server.trailing == b"SHL1rest"


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\n", "not a shoal handshake"),
    (b"\x16\x03\x01\x02\x00", "not a shoal handshake"),  # a TLS ClientHello
    (b"SHL1\x01\x00\x00\x00", "not a shoal handshake"),  # framed messages, no handshake
    (hs.MAGIC + bytes([99]) + struct.pack("<H", 0), "unknown handshake record"),
    (hs.MAGIC + bytes([hs.HELLO]) + struct.pack("<H", 60000), "limit"),
    (hs.encode_record(hs.RESPONSE, bytes(33)), "expected HELLO"),
    (hs.encode_record(hs.HELLO, bytes(10)), "HELLO of 10 bytes"),
])
def test_garbage_fails_the_server_at_once(data: bytes, reason: str) -> None:
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    events = server.receive_data(data)
    end = outcome(events)
    assert isinstance(end, hs.HandshakeFailed) and reason in end.reason
    assert server.finished and server.bytes_wanted() == 0


def test_a_replayed_hello_in_place_of_the_response_fails() -> None:
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    hello = client.start()
    deliver(server, hello)
    end = outcome(deliver(server, hello))
    assert isinstance(end, hs.HandshakeFailed) and "expected RESPONSE" in end.reason


def test_records_are_bounded_before_authentication() -> None:
    with pytest.raises(ValueError):
        hs.encode_record(hs.REFUSE, bytes(hs.MAX_BODY + 1))
    assert len(hs.refuse_record(hs.REFUSED, "x" * 10_000)) == hs.HEAD_SIZE + hs.MAX_BODY
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    assert server.bytes_wanted() <= hs.HEAD_SIZE + hs.MAX_BODY


def test_misuse_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="role"):
        hs.ClientHandshake("admin", TOKEN, nonce(1), VERSION)
    with pytest.raises(ValueError, match="nonce"):
        hs.ServerHandshake(TOKEN, b"short", VERSION)
    with pytest.raises(ValueError, match="empty"):
        hs.ClientHandshake("client", b"", nonce(1), VERSION)
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    client.start()
    with pytest.raises(RuntimeError):
        client.start()


# -- fuzzing -----------------------------------------------------------------------------

kinds = st.sampled_from([hs.HELLO, hs.CHALLENGE, hs.RESPONSE, hs.ACCEPT, hs.REFUSE, 0, 6, 255])
records = st.builds(lambda k, b: hs.MAGIC + bytes([k]) + struct.pack("<H", len(b)) + b,
                    kinds, st.binary(max_size=80))
streams = st.lists(records | st.binary(max_size=40), max_size=6).map(b"".join)


def _check(events: list[hs.Event], machine: hs._Machine) -> None:
    ends = [e for e in events if not isinstance(e, hs.SendData)]
    assert len(ends) <= 1
    for e in events:
        if isinstance(e, hs.SendData):
            assert len(e.data) <= hs.HEAD_SIZE + hs.MAX_BODY
    if ends:
        assert machine.finished


@settings(max_examples=300, deadline=None)
@given(data=streams, token=st.sampled_from([None, TOKEN]), chunk=st.integers(0, 9))
def test_random_bytes_never_authenticate_a_server(data: bytes, token: bytes | None, chunk: int
                                                  ) -> None:
    server = hs.ServerHandshake(token, nonce(2), VERSION)
    events = deliver(server, data, chunk)
    _check(events, server)
    end = outcome(events)
    if token is not None:  # without the token nobody can compute a valid proof
        assert not isinstance(end, hs.HandshakeDone)


@settings(max_examples=300, deadline=None)
@given(data=streams, token=st.sampled_from([None, TOKEN]), role=st.sampled_from(list(hs.ROLES)))
def test_random_bytes_never_authenticate_a_server_to_a_client(data: bytes, token: bytes | None,
                                                               role: str) -> None:
    client = hs.ClientHandshake(role, token, nonce(1), VERSION)
    client.start()
    events = deliver(client, data)
    _check(events, client)
    if token is not None:
        assert not isinstance(outcome(events), hs.HandshakeDone)


@settings(max_examples=200, deadline=None)
@given(flip=st.integers(0, 10_000), bit=st.integers(0, 7), which=st.sampled_from(["c", "s"]))
def test_any_corrupted_byte_fails_the_handshake(flip: int, bit: int, which: str) -> None:
    """One flipped bit anywhere in either side's records: no side completes
    with a different view of the role, or without the proofs."""
    client = hs.ClientHandshake("client", TOKEN, nonce(1), VERSION)
    server = hs.ServerHandshake(TOKEN, nonce(2), VERSION)
    hello = bytearray(client.start())
    if which == "c":
        hello[flip % len(hello)] ^= 1 << bit
    events = deliver(server, bytes(hello))
    challenge = bytearray(sent(events))
    if not challenge or outcome(events) is not None:
        return  # the server failed (or refused) at once
    if which == "s":
        challenge[flip % len(challenge)] ^= 1 << bit
    events = deliver(client, bytes(challenge))
    response = sent(events)
    server_end = outcome(deliver(server, response)) if response else None
    if isinstance(server_end, hs.HandshakeDone):
        # only the HELLO's flags byte is outside the proofs: the server reads
        # nothing from it (a hint for logs), so changing it changes nothing
        assert which == "c" and flip % len(hello) == hs.HEAD_SIZE + 3 and bit == 0
