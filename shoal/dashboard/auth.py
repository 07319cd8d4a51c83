"""Who may look at the dashboard.

Rules:
1. Loopback by default.  A dashboard bound to a loopback address needs no
   login (as the scheduler needs no token there), unless the setting
   ``dashboard.login`` is ``always`` (a machine other users log in to: they
   could read the pages, though never run anything).
2. Beyond loopback it asks for the cluster's token once (``/login``), and
   keeps a session id in an ``HttpOnly``, ``SameSite=Strict`` cookie: the
   token itself never sits in the browser.  Without a token configured
   (``security.token``), serving beyond loopback is refused (``launch.py``).
3. Every request's ``Host`` header must name this dashboard (loopback names,
   the bound address, this machine's names, ``dashboard.allowed-hosts``):
   a page of another site that rebinds its DNS name to 127.0.0.1 is refused
   (DNS rebinding).  A websocket's or event stream's ``Origin``, when sent,
   must be the same host.

The token is the cluster's (its ``shoal.Security``, handed to the
dashboard process as its other processes get it), checked in constant time
by ``shoal.security.verify_token``.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterable

COOKIE = "shoal-dashboard-session"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    from shoal.security import is_loopback as address_is_loopback

    name = host.strip("[]")
    return address_is_loopback(f"tcp://[{name}]:0" if ":" in name else f"tcp://{name}:0")


def needs_login(bound_host: str) -> bool:
    """Whether browsers must log in to a dashboard bound to ``bound_host``:
    beyond loopback always; on loopback with ``dashboard.login: always``."""
    from shoal import config

    mode = str(config.get("dashboard.login")).lower()
    if mode not in ("auto", "always"):
        raise ValueError(f"the setting dashboard.login must be 'auto' or 'always', got {mode!r}")
    return mode == "always" or not is_loopback(bound_host)


def host_names(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names the ``Host`` header may carry (lower case, without port)."""
    names = {"localhost", "127.0.0.1", "::1", bound_host.strip("[]").lower()}
    if not is_loopback(bound_host):
        hostname = socket.gethostname()
        names.update({hostname.lower(), socket.getfqdn().lower()})
        try:
            names.update(str(info[4][0]) for info in socket.getaddrinfo(hostname, None))
        except OSError:
            pass
        if bound_host in ("0.0.0.0", "::", ""):
            from shoal.deploy.scheduler import contact_host

            names.add(contact_host())
    names.update(h.lower() for h in extra)
    names.discard("")
    return frozenset(names)


def host_of(header: str) -> str:
    """The host part of a ``Host`` header or an origin: ``[::1]:8787`` -> ``::1``."""
    value = header.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1].split("/", 1)[0]
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    return bool(header) and host_of(header or "") in allowed


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """A request from a page (``Origin``) is allowed only from this
    dashboard's own pages; one without ``Origin`` (curl, Prometheus) is."""
    if not origin:
        return True
    if origin == "null" or not host_header:
        return False
    value = origin.split("://", 1)[-1].rstrip("/").lower()
    return value == host_header.strip().lower()


class Sessions:
    """Session ids handed out after a good token, each valid ``lifetime``
    seconds (the caller passes the time)."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def new(self, now: float) -> str:
        self._expiry = {s: t for s, t in self._expiry.items() if t > now}
        session = secrets.token_urlsafe(32)
        self._expiry[session] = now + self.lifetime
        return session

    def valid(self, session: str | None, now: float) -> bool:
        if not session:
            return False
        expiry = self._expiry.get(session)
        return expiry is not None and expiry > now
