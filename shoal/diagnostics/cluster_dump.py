"""Files of ``client.dump_cluster_state()``: the cluster's state as gzipped
msgpack (``<name>.msgpack.gz``) or YAML (``<name>.yaml``), as dask.distributed
writes them.  The layout inside::

    {"scheduler": {"address", "id", "tasks": {key: {...}}, "workers": {...},
                   "clients": {...}, "transition_log": [...], ...},
     "workers": {address: {"address", "tasks": {key: {...}}, "executing": [...],
                           ...} or "the error that worker answered"},
     "versions": {"scheduler": {...}, "workers": {address: {...}}}}

(docs/usage.md, "Introspection", lists every field.)  ``load`` reads one back.
"""

from __future__ import annotations

import gzip
import os
from typing import Any

FORMATS = {"msgpack": ".msgpack.gz", "yaml": ".yaml"}


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"format must be 'msgpack' or 'yaml', got {format!r}")
    return format


def path_for(filename: str | os.PathLike[str], format: str) -> str:
    """``filename`` with the format's suffix, unless it has it already."""
    name = os.fspath(filename)
    suffix = FORMATS[check_format(format)]
    return name if name.endswith(suffix) else name + suffix


def write(state: dict[str, Any], filename: str | os.PathLike[str], format: str) -> str:
    """Write ``state`` to ``filename`` (suffix added); the path written."""
    import msgspec

    path = path_for(filename, format)
    if format == "msgpack":
        with gzip.open(path, "wb") as f:
            f.write(msgspec.msgpack.encode(state))
    else:
        with open(path, "wb") as f:
            f.write(msgspec.yaml.encode(state))
    return path


def load(filename: str | os.PathLike[str]) -> Any:
    """A dump written by ``write`` (the format from the suffix)."""
    import msgspec

    path = os.fspath(filename)
    if path.endswith(".msgpack.gz"):
        with gzip.open(path, "rb") as f:
            return msgspec.msgpack.decode(f.read())
    if path.endswith(".yaml"):
        with open(path, "rb") as f:
            return msgspec.yaml.decode(f.read())
    raise ValueError(f"not a cluster dump (.msgpack.gz or .yaml): {path}")
