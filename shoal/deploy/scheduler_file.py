"""Scheduler files: a JSON file in which a scheduler says where it is, so that
workers and clients started elsewhere (a batch job, another terminal) find
it, as with dask's ``--scheduler-file``.

    shoal scheduler --scheduler-file /shared/scheduler.json
    shoal worker --scheduler-file /shared/scheduler.json
    Client(scheduler_file="/shared/scheduler.json")

The file holds dask's layout (``{"type": "Scheduler", "address": ..., "id":
..., "started": ..., "services": {...}}``), written atomically (a temporary
file renamed over it) so a reader never sees half of it, readable only by its
owner (0600): it tells who may be reached where.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

TYPE_CHECKING = False  # typing is not imported: the client reads these before loading
if TYPE_CHECKING:
    from typing import Any


def write_scheduler_file(path: str, info: dict[str, Any]) -> None:
    """Write ``info`` (which must hold ``"address"``) to ``path`` atomically."""
    if "address" not in info:
        raise ValueError("a scheduler file needs the scheduler's address")
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".scheduler-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_scheduler_file(path: str, timeout: float | None = None) -> str:
    """The scheduler address in the file at ``path``, waiting up to
    ``timeout`` seconds (default: setting ``comm.timeouts.connect``) for the
    file to appear: a worker and its scheduler are often started together."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"scheduler_file must be a path, got {path!r}")
    if timeout is None:
        from shoal import config

        timeout = config.duration("comm.timeouts.connect") or 10.0
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    deadline = time.monotonic() + timeout
    last_error = "it does not exist"
    while True:
        try:
            with open(path) as f:
                info = json.load(f)
            address = info["address"]
            if not isinstance(address, str):
                raise TypeError("the address is not a string")
            return address
        except FileNotFoundError:
            last_error = "it does not exist"
        except (OSError, ValueError, KeyError, TypeError) as e:
            last_error = f"it is not a scheduler file ({type(e).__name__}: {e})"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"could not read a scheduler address from {path} within "
                               f"{timeout:g} s: {last_error}")
        time.sleep(0.05)
