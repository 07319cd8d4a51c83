"""Versions of Python and of the packages that matter, in dask.distributed's
layout, and the comparison ``client.get_versions(check=True)`` makes.

    {"host": {"python": "3.11.4.final.0", "python-bits": 64, "OS": "Linux", ...},
     "packages": {"python": "3.11.4.final.0", "shoal": "0.1.0", "msgspec": ..., ...}}

Every process (client, scheduler, each worker) answers for itself.  Versions
come from the installed distributions' metadata, without importing them.
"""

from __future__ import annotations

import functools
import os
import platform
import struct
import sys
import warnings
from collections.abc import Iterable
from typing import Any

#: what every process needs, in step
REQUIRED = ("shoal", "msgspec", "cloudpickle", "psutil", "donfig")
#: reported when installed
OPTIONAL = ("numpy", "pandas", "dask", "uvloop")
#: the scheduler never unpickles user data: only these must match it
SCHEDULER_RELEVANT = frozenset({"python", "shoal", "msgspec"})


class VersionMismatchWarning(UserWarning):
    """Processes of one cluster run different versions of a package."""


def get_versions(packages: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    extra = list(packages)
    for p in extra:
        if not isinstance(p, str):
            raise TypeError(f"packages must be names of packages, got {p!r}")
    return {"host": system_info(), "packages": package_versions([*REQUIRED, *OPTIONAL, *extra])}


def system_info() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "python": _python(),
        "python-bits": struct.calcsize("P") * 8,
        "OS": uname.system,
        "OS-release": uname.release,
        "machine": uname.machine,
        "processor": uname.processor,
        "byteorder": sys.byteorder,
        "LC_ALL": os.environ.get("LC_ALL", "None"),
        "LANG": os.environ.get("LANG", "None"),
    }


def _python() -> str:
    v = sys.version_info
    return f"{v.major}.{v.minor}.{v.micro}.{v.releaselevel}.{v.serial}"


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": _python()}
    for name in names:
        out[name] = _version(name)
    return out


@functools.cache
def _version(name: str) -> str | None:
    if name == "shoal":
        import shoal

        return shoal.__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except (PackageNotFoundError, ValueError):
        return None


def mismatches(client: dict[str, Any], scheduler: dict[str, Any] | None,
               workers: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """``[(package, client's, scheduler's, workers')]`` for each package whose
    versions differ (the scheduler counts only for ``SCHEDULER_RELEVANT``;
    workers' is one version, or the set of them when they differ)."""
    c = client.get("packages", {})
    s = (scheduler or {}).get("packages", {})
    ws = {w: (v.get("packages", {}) if isinstance(v, dict) else {}) for w, v in workers.items()}
    names = set(c) | set(s)
    for v in ws.values():
        names |= set(v)
    rows = []
    for name in sorted(names):
        seen = {c.get(name, "MISSING")}
        if name in SCHEDULER_RELEVANT:
            seen.add(s.get(name, "MISSING"))
        of_workers = {v.get(name, "MISSING") for v in ws.values()}
        seen |= of_workers
        if len(seen) > 1:
            shown: Any = next(iter(of_workers)) if len(of_workers) == 1 else (sorted(map(str, of_workers)) or None)
            rows.append((name, c.get(name, "MISSING"), s.get(name, "MISSING"), shown))
    return rows


def warn_mismatches(rows: list[tuple[str, Any, Any, Any]]) -> None:
    """A ``VersionMismatchWarning`` with a table of ``rows``, if any (dask
    warns too; it never raises for a mismatch)."""
    if not rows:
        return
    table = [("Package", "Client", "Scheduler", "Workers"), *((str(a), str(b), str(c), str(d)) for a, b, c, d in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    warnings.warn("Mismatched versions found\n\n" + "\n".join(lines), VersionMismatchWarning, stacklevel=3)
