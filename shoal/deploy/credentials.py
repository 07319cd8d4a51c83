"""Handing the cluster's token to workers started elsewhere (batch jobs,
ssh) without letting other users of the machines see it.

A process's command line is readable by every user of the machine
(``ps``, ``/proc/PID/cmdline``); its environment only by the same user
(``/proc/PID/environ`` is mode 0400).  So the token travels:

* to a batch job through a file only its owner can read (0600, in a
  0700 directory on a file system the compute nodes share); the job script
  reads it into the environment variable ``SHOAL_TOKEN`` with the shell's
  ``read`` (a builtin: no command line, and ``set -x`` prints the
  variable's name, never its value), and the worker reads that variable;
* over ssh on the remote process's standard input, read the same way
  (``shoal/deploy/ssh.py``).

Where the token comes from: the cluster's ``security`` (an object with a
``token``, as ``shoal.Security``), else the setting ``security.token``,
else the environment variable ``SHOAL_TOKEN`` of this process.  A cluster
with no token passes none.
"""

from __future__ import annotations

import os
import secrets
import shlex
from typing import Any

#: the environment variable a worker reads its token from
TOKEN_ENV = "SHOAL_TOKEN"
#: the setting holding the cluster's token (issue 10's ``shoal.security``)
TOKEN_SETTING = "security.token"


def cluster_token(security: Any = None) -> str | None:
    """The token the cluster's workers must present (see the module docstring)."""
    token = getattr(security, "token", None) if security is not None else None
    if token:
        return str(token)
    from shoal import config

    configured = config.get(TOKEN_SETTING, None)
    if configured:
        return str(configured).strip()
    return os.environ.get(TOKEN_ENV, "").strip() or None


def write_token_file(directory: str, prefix: str, token: str) -> str:
    """A new file holding ``token`` (mode 0600, in ``directory``, made 0700
    if missing); its absolute path.  The caller removes it when done."""
    directory = os.path.abspath(os.path.expanduser(os.path.expandvars(directory)))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f".{prefix}-{secrets.token_hex(8)}.token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def remove_token_file(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def read_token_lines(path: str) -> list[str]:
    """Shell lines that set ``SHOAL_TOKEN`` from the file at ``path`` (or
    stop the job saying why)."""
    quoted = shlex.quote(path)
    return [f"read -r {TOKEN_ENV} < {quoted} || {{ echo \"cannot read the cluster's token "
            f"file {path}\" >&2; exit 1; }}",
            f"export {TOKEN_ENV}"]
