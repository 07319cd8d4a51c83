"""Who may connect: the cluster's token, and TLS (``Security``, dask's object).

Every connection opens with a handshake (``shoal/comm/handshake.py``) in
which both ends prove they hold the cluster's *token*, a shared secret,
before anything else crosses; TLS (``tls://`` addresses) adds encryption
and certificates on top.  This module holds what they are made from:

* ``Security``: dask.distributed's object (``tls_*`` fields,
  ``require_encryption``, ``temporary()``), plus ``token``; accepted by
  ``Client``, ``LocalCluster``, ``Scheduler``, ``Worker`` and ``Nanny``.
* where a process finds its token: ``Security(token=...)``, else the
  setting ``security.token`` (environment variable ``SHOAL_TOKEN``), else
  the file named by ``security.token-file`` (``SHOAL_TOKEN_FILE``), which
  must be readable by its owner only;
* ``token_for_server``: the rule "a server listening beyond loopback
  needs a token" (setting ``security.require-token``), and the token a
  scheduler generates when it has none (written to a 0600 file);
* ``verify_token``: a constant-time check of a token someone presents
  (the dashboard asks browsers for it).

Processes a ``LocalCluster``, a ``Nanny`` or ``shoal worker --nworkers``
start get their parent's ``Security`` in the environment variable
``SHOAL_INTERNAL_SECURITY`` (``security_env``/``security_from_env``):
never on a command line, which other users of the machine can read.

Importing this module is cheap (no ssl, no cryptography until needed).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger("shoal.security")

#: the environment variable carrying a parent's Security to its children
ENV_VAR = "SHOAL_INTERNAL_SECURITY"
ROLES = ("client", "scheduler", "worker")
_TLS_FIELDS = (
    "tls_ca_file", "tls_ciphers", "tls_client_cert", "tls_client_key", "tls_scheduler_cert",
    "tls_scheduler_key", "tls_worker_cert", "tls_worker_key",
)
_CONFIG_KEYS = {
    "tls_ca_file": "comm.tls.ca-file",
    "tls_ciphers": "comm.tls.ciphers",
    "tls_client_cert": "comm.tls.client.cert",
    "tls_client_key": "comm.tls.client.key",
    "tls_scheduler_cert": "comm.tls.scheduler.cert",
    "tls_scheduler_key": "comm.tls.scheduler.key",
    "tls_worker_cert": "comm.tls.worker.cert",
    "tls_worker_key": "comm.tls.worker.key",
}
_SHORT_TOKEN = 16


class Security:
    """How a cluster's processes prove who they are (dask.distributed's
    ``Security``, plus shoal's token).

    token: the cluster's shared secret (default: setting ``security.token``,
        environment variable ``SHOAL_TOKEN``); ``False`` or ``""``: none,
        whatever the settings say.
    token_file: a file holding the token, readable by its owner only
        (default: setting ``security.token-file``, ``SHOAL_TOKEN_FILE``).
    require_encryption: refuse connections that are not TLS (default:
        setting ``comm.require-encryption``, else True when TLS files are given).
    tls_ca_file: the certificate authority (a PEM file, or PEM text) that
        signed every certificate of the cluster.
    tls_{client,scheduler,worker}_{cert,key}: each role's certificate and
        key (files, or PEM text; the key may be appended to the certificate).
    tls_ciphers, tls_min_version, tls_max_version: OpenSSL cipher string and
        TLS versions (``ssl.TLSVersion.TLSv1_2`` or ``TLSv1_3``).
    tls_check_hostname: check that a server's certificate names the host
        connected to (default: setting ``comm.tls.check-hostname``, true;
        dask.distributed never checks).
    extra_conn_args: dask's; shoal's connections take no extra arguments,
        so it must be empty.
    """

    token: str | None
    token_file: str | None
    require_encryption: bool
    tls_ca_file: str | None
    tls_ciphers: str | None
    tls_client_cert: str | None
    tls_client_key: str | None
    tls_scheduler_cert: str | None
    tls_scheduler_key: str | None
    tls_worker_cert: str | None
    tls_worker_key: str | None
    tls_min_version: Any
    tls_max_version: Any
    tls_check_hostname: bool
    extra_conn_args: dict[str, Any]
    _contexts: dict[tuple[str, bool], Any]

    __slots__ = (
        "_contexts", "extra_conn_args", "require_encryption", "tls_ca_file", "tls_check_hostname",
        "tls_ciphers", "tls_client_cert", "tls_client_key", "tls_max_version", "tls_min_version",
        "tls_scheduler_cert", "tls_scheduler_key", "tls_worker_cert", "tls_worker_key", "token",
        "token_file",
    )

    def __init__(
        self,
        require_encryption: bool | None = None,
        *,
        token: str | bool | None = None,
        token_file: str | None = None,
        tls_ca_file: str | None = None,
        tls_ciphers: str | None = None,
        tls_min_version: Any = None,
        tls_max_version: Any = None,
        tls_client_key: str | None = None,
        tls_client_cert: str | None = None,
        tls_scheduler_key: str | None = None,
        tls_scheduler_cert: str | None = None,
        tls_worker_key: str | None = None,
        tls_worker_cert: str | None = None,
        tls_check_hostname: bool | None = None,
        extra_conn_args: dict[str, Any] | None = None,
    ) -> None:
        from shoal import config

        given = {"tls_ca_file": tls_ca_file, "tls_ciphers": tls_ciphers,
                 "tls_client_key": tls_client_key, "tls_client_cert": tls_client_cert,
                 "tls_scheduler_key": tls_scheduler_key, "tls_scheduler_cert": tls_scheduler_cert,
                 "tls_worker_key": tls_worker_key, "tls_worker_cert": tls_worker_cert}
        for name, value in given.items():
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Security({name}=...) takes a file name or PEM text, got {value!r}")
            setattr(self, name, value if value is not None else config.get(_CONFIG_KEYS[name]))
        if extra_conn_args:
            raise NotImplementedError(f"Security(extra_conn_args=...): shoal's connections take "
                                      f"no extra arguments (got {sorted(extra_conn_args)})")
        self.extra_conn_args: dict[str, Any] = {}
        if require_encryption is None:
            require_encryption = config.get("comm.require-encryption")
        if require_encryption is None:
            require_encryption = any(v is not None for v in given.values())
        self.require_encryption = bool(require_encryption)
        self.tls_min_version = _tls_version(tls_min_version, "tls_min_version",
                                            config.get("comm.tls.min-version"), default=1.2)
        self.tls_max_version = _tls_version(tls_max_version, "tls_max_version",
                                            config.get("comm.tls.max-version"), default=None)
        if tls_check_hostname is None:
            tls_check_hostname = config.get("comm.tls.check-hostname")
        self.tls_check_hostname = bool(tls_check_hostname)
        self.token_file = token_file
        self.token = _resolve_token(token, token_file)
        self._contexts: dict[tuple[str, bool], Any] = {}

    # -- dask's interface ---------------------------------------------------------------

    @classmethod
    def temporary(cls, **kwargs: Any) -> Security:
        """A new certificate authority and one certificate it signs, made
        now and kept in memory, used by every role: TLS for one machine's
        cluster (the certificate names this machine's host names and
        addresses).  Needs the ``cryptography`` package."""
        from shoal.comm.certificates import make_ca, make_certificate, this_machine_hosts

        ca = make_ca()
        cert, key = make_certificate(ca, this_machine_hosts())
        fields = {f"tls_{role}_{part}": value for role in ROLES
                  for part, value in (("cert", cert), ("key", key))}
        return cls(**{"require_encryption": True, "tls_ca_file": ca.cert, **fields, **kwargs})

    def get_tls_config_for_role(self, role: str) -> dict[str, Any]:
        """The TLS files of ``role`` ("client", "scheduler" or "worker")."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        return {"ca_file": self.tls_ca_file, "ciphers": self.tls_ciphers,
                "cert": getattr(self, f"tls_{role}_cert"), "key": getattr(self, f"tls_{role}_key")}

    def get_connection_args(self, role: str) -> dict[str, Any]:
        """What a connection made as ``role`` uses (dask's keys, plus ``security``)."""
        return {"ssl_context": self.ssl_context(role, server_side=False),
                "require_encryption": self.require_encryption,
                "extra_conn_args": dict(self.extra_conn_args), "security": self}

    def get_listen_args(self, role: str) -> dict[str, Any]:
        """What a listener serving as ``role`` uses (dask's keys, plus ``security``)."""
        return {"ssl_context": self.ssl_context(role, server_side=True),
                "require_encryption": self.require_encryption, "security": self}

    # -- shoal's -------------------------------------------------------------------------

    @property
    def has_tls(self) -> bool:
        return bool(self.tls_ca_file) and any(getattr(self, f"tls_{r}_cert") for r in ROLES)

    def ssl_context(self, role: str, server_side: bool) -> Any:
        """The ``ssl.SSLContext`` of ``role`` (made once), or None without
        TLS files for it.  Mutual TLS: a server asks for the client's
        certificate; a client checks the server's host name."""
        key = (role, server_side)
        if key not in self._contexts:
            from shoal.comm.tls import make_context

            tls = self.get_tls_config_for_role(role)
            self._contexts[key] = (make_context(tls, server_side, self.tls_min_version,
                                                self.tls_max_version, self.tls_check_hostname)
                                   if tls["ca_file"] and tls["cert"] else None)
        return self._contexts[key]

    def replace(self, **changes: Any) -> Security:
        """A copy with ``changes`` (attribute names: ``token=...``, ``tls_...``)."""
        new = object.__new__(Security)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name))
        new._contexts = {}
        for name, value in changes.items():
            if name not in self.__slots__ or name.startswith("_"):
                raise TypeError(f"Security has no field {name!r}")
            setattr(new, name, value)
        return new

    def verify_token(self, candidate: Any) -> bool:
        """Whether ``candidate`` is this cluster's token (constant time);
        True for anything when there is no token."""
        return self.token is None or verify_token(candidate, self.token)

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "_contexts"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._contexts = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Security):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    __hash__ = None  # type: ignore[assignment]

    def _attr_to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"require_encryption": self.require_encryption}
        out["token"] = "***" if self.token else None
        for name in sorted(_TLS_FIELDS):
            value = getattr(self, name)
            if value is not None:
                out[name] = ("Temporary (In-memory)" if "\n" in value
                             else f"Local ({os.path.abspath(value)})" if name != "tls_ciphers"
                             else value)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self._attr_to_dict().items())
        return f"Security({fields})"


# -- the token ----------------------------------------------------------------------------


def _resolve_token(token: str | bool | None, token_file: str | None) -> str | None:
    """The token: given, else read from the given file, else the settings."""
    if token is False or token == "":
        return None
    if token is True:
        raise TypeError("Security(token=True): give the token itself (a string), or use "
                        "generate_token()")
    if token is not None:
        return _checked_token(token, "Security(token=...)")
    if token_file is not None:
        return read_token_file(token_file)
    from shoal import config

    configured = config.get("security.token")
    if configured not in (None, ""):
        return _checked_token(configured, "the setting security.token (SHOAL_TOKEN)")
    path = config.get("security.token-file")
    if path:
        return read_token_file(str(path))
    return None


def _checked_token(token: Any, where: str) -> str:
    if not isinstance(token, str):
        raise TypeError(f"{where}: a token is a string, got {type(token).__name__}")
    token = token.strip()
    if not token:
        raise ValueError(f"{where}: the token is empty")
    if len(token) < _SHORT_TOKEN:
        logger.warning("%s: a token of %d characters can be guessed; use a long random one "
                       "(shoal.security.generate_token())", where, len(token))
    return str(token)


def generate_token() -> str:
    """A new random token (256 bits from ``os.urandom``, URL-safe text)."""
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def read_token_file(path: str) -> str:
    """The token in ``path``, which must be a file only its owner can read
    or write (mode 0600 or stricter): ``ValueError`` naming the problem."""
    import stat

    path = os.path.expanduser(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ValueError(f"token file {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"cannot read token file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"token file {path} is not a regular file")
        if os.name == "posix":
            if st.st_mode & 0o077:
                raise ValueError(f"token file {path} can be read or written by others "
                                 f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}")
            if st.st_uid != os.getuid():
                raise ValueError(f"token file {path} belongs to another user")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"token file {path} does not hold text") from None
    return _checked_token(text, f"token file {path}")


def write_token_file(path: str, token: str) -> str:
    """Write ``token`` to ``path`` (created 0600, atomically; its directory
    0700 if made here); the absolute path."""
    import tempfile

    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".token-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def verify_token(candidate: Any, token: str | None) -> bool:
    """Whether ``candidate`` equals ``token``, compared in constant time
    (False when either is missing or not text)."""
    import hmac

    if not isinstance(candidate, str) or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(candidate.strip().encode(), token.encode())


# -- servers: when a token is needed ---------------------------------------------------------


def is_loopback(address: str) -> bool:
    """Whether only this machine can reach ``address`` (a loopback host, or
    the in-process transport)."""
    import ipaddress

    from shoal.comm.addresses import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme == "inproc":
        return True
    host = parse_host_port(loc, 0)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_for_server(security: Security, address: str, who: str) -> tuple[Security, bool]:
    """The ``Security`` a server listening at ``address`` runs with, and
    whether its token was generated here.

    With a token: that one.  Without, on loopback (or setting
    ``security.require-token: never``): none.  Beyond loopback (or with
    ``always``): a scheduler generates one; a worker cannot (nobody would
    know it), so that is a ``ValueError`` saying what to give it."""
    from shoal import config

    if security.token is not None:
        return security, False
    rule = str(config.get("security.require-token")).lower()
    if rule not in ("auto", "always", "never", "true", "false"):
        raise ValueError(f"setting security.require-token: expected auto, always or never, got "
                         f"{rule!r}")
    if rule in ("never", "false") or (rule == "auto" and is_loopback(address)):
        if rule in ("never", "false") and not is_loopback(address):
            logger.warning("%s listens at %s with no token (security.require-token: never): "
                           "anyone who can reach it can run code on this cluster", who, address)
        return security, False
    if who != "scheduler":
        raise ValueError(
            f"a {who} listening at {address}, beyond this machine, needs the cluster's token: "
            "give it with SHOAL_TOKEN, --token-file (a 0600 file) or Security(token=...)")
    return security.replace(token=generate_token()), True


def generated_token_path(port: int | str) -> str:
    from shoal import config

    directory = config.get("security.token-directory") or "~/.shoal"
    return os.path.join(os.path.expanduser(str(directory)), f"scheduler-{port}.token")


# -- handing a Security to child processes ---------------------------------------------------


def security_env(security: Security | None) -> dict[str, str]:
    """Environment variables that give a child process ``security``."""
    if security is None:
        return {}
    import json

    state = security.__getstate__()
    for name in ("tls_min_version", "tls_max_version"):
        if state[name] is not None:
            state[name] = state[name].name
    return {ENV_VAR: json.dumps(state)}


def security_from_env(environ: Any = None) -> Security | None:
    """The Security a parent process handed over (``security_env``), if any."""
    import json

    raw = (os.environ if environ is None else environ).get(ENV_VAR)
    if not raw:
        return None
    try:
        state = json.loads(raw)
        import ssl

        for name in ("tls_min_version", "tls_max_version"):
            if state.get(name) is not None:
                state[name] = ssl.TLSVersion[state[name]]
        sec = object.__new__(Security)
        sec.__setstate__(state)
        missing = [n for n in Security.__slots__ if n != "_contexts" and n not in state]
        if missing:
            raise KeyError(missing)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"environment variable {ENV_VAR} is not a shoal Security: {e}") from None
    return sec


def _tls_version(value: Any, name: str, configured: Any, default: float | None) -> Any:
    import ssl

    valid = {None: None, 1.2: ssl.TLSVersion.TLSv1_2, 1.3: ssl.TLSVersion.TLSv1_3,
             "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
    if value is not None:
        if value not in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            raise ValueError(f"{name}={value!r} is not supported, expected ssl.TLSVersion.TLSv1_2 "
                             "or TLSv1_3")
        return value
    if configured is None:
        configured = default
    if configured not in valid:
        raise ValueError(f"setting for {name}: {configured!r} is not supported, expected 1.2 or 1.3")
    return valid[configured]


def coerce_security(security: Any, owner: str) -> Security | None:
    """dask's ``security=`` keyword: a ``Security``, True (``Security.temporary()``),
    or None/False (the settings decide)."""
    if security is None or security is False:
        return None
    if security is True:
        return Security.temporary()
    if not isinstance(security, Security):
        raise TypeError(f"{owner}(security=...) takes a shoal.Security (or True for temporary "
                        f"certificates), got {type(security).__name__}")
    return security


# -- which Security a client uses ------------------------------------------------------------

#: the Security of each scheduler a LocalCluster of this process runs, by address
_clusters: dict[str, Security] = {}


def remember_cluster(address: str, security: Security) -> None:
    """A LocalCluster of this process runs a scheduler at ``address``: a
    ``Client(address)`` made here uses its token without being told."""
    from shoal.comm.addresses import normalize_address

    _clusters[normalize_address(address)] = security


def forget_cluster(address: str) -> None:
    from shoal.comm.addresses import normalize_address

    if address:
        _clusters.pop(normalize_address(address), None)


def security_for_client(client: Any, address: str) -> Security:
    """What a client connecting to ``address`` proves itself with: its own
    ``security=``, else its cluster's, else that of a LocalCluster of this
    process at that address, else the settings'."""
    if client.security is not None:
        return client.security  # type: ignore[no-any-return]
    own = getattr(getattr(client, "cluster", None), "security", None)
    if isinstance(own, Security):
        return own
    return security_for_address(address)


def security_for_address(address: str) -> Security:
    """That of a LocalCluster of this process at ``address``, else the settings'."""
    from shoal.comm.addresses import normalize_address

    try:
        known = _clusters.get(normalize_address(address))
    except ValueError:
        known = None
    return known if known is not None else Security()


def cluster_security(security: Any) -> Security:
    """A LocalCluster's Security: the given one (True: temporary TLS), or
    the settings', with a token: the configured one, else a new one for
    this cluster alone (so that even other users of this machine cannot
    connect to it)."""
    sec = coerce_security(security, "LocalCluster") or Security()
    return sec if sec.token is not None else sec.replace(token=generate_token())
