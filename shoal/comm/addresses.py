"""Addresses: ``scheme://location``.  ``tcp://host:port``, ``tls://host:port``
(the same over TLS) and ``inproc://name``."""

from __future__ import annotations

import socket

DEFAULT_SCHEME = "tcp"
SCHEMES = ("tcp", "tls", "inproc")


def parse_address(address: str) -> tuple[str, str]:
    """``"tcp://h:1"`` -> ``("tcp", "h:1")``; a bare ``"h:1"`` means tcp."""
    if not isinstance(address, str) or not address:
        raise ValueError(f"expected an address like 'tcp://host:port', got {address!r}")
    scheme, sep, loc = address.partition("://")
    if not sep:
        scheme, loc = DEFAULT_SCHEME, address
    if scheme not in SCHEMES:
        raise ValueError(f"unknown address scheme {scheme!r} in {address!r}; expected one of {SCHEMES}")
    return scheme, loc


def parse_host_port(location: str, default_port: int | None = None) -> tuple[str, int]:
    """``"h:1"`` -> ``("h", 1)``; ``"[::1]:1"`` -> ``("::1", 1)``."""
    if location.startswith("["):
        host, _, rest = location[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif location.count(":") == 1:
        host, _, port_s = location.partition(":")
    elif ":" not in location:
        host, port_s = location, ""
    else:  # a bare IPv6 address
        host, port_s = location, ""
    if not port_s:
        if default_port is None:
            raise ValueError(f"no port in address {location!r}")
        return host, default_port
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"bad port {port_s!r} in address {location!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"port {port} out of range in {location!r}")
    return host, port


def unparse_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_address(address: str) -> str:
    scheme, loc = parse_address(address)
    return f"{scheme}://{loc}"


def get_host(address: str) -> str:
    scheme, loc = parse_address(address)
    if scheme == "inproc":
        return "inproc"
    return parse_host_port(loc, 0)[0]


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket (blocking calls; fine before the loop uses it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host in ("", "0.0.0.0"):
        host = "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"could not listen on {unparse_host_port(host, port)}: {e.strerror}") from e
    return sock
