"""Write tests/data/dask_api.json: dask.distributed's public futures API
(names, and the parameters of each callable), which the unit test
tests/unit/test_dask_parity.py holds shoal to.

Run it where dask.distributed is installed (the ``bench`` extra):

    python scripts/dask_api_snapshot.py

The snapshot is data read from the installed package's signatures, so the
test runs without dask.distributed (shoal never imports it at run time).
"""

from __future__ import annotations

import inspect
import json
import pathlib
import sys
from typing import Any

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "dask_api.json"


def params(obj: Any) -> list[dict[str, Any]] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [{"name": p.name, "kind": p.kind.name} for p in sig.parameters.values()
            if p.name not in ("self", "cls")]


def members(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__", "__aenter__",
                                                 "__aexit__", "__await__", "__iter__", "__aiter__"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property):
            out[name] = {"kind": "property"}
        elif isinstance(attr, (staticmethod, classmethod)) or inspect.isfunction(attr):
            out[name] = {"kind": "method", "params": params(getattr(cls, name))}
        else:
            out[name] = {"kind": "attribute"}
    return out


def main() -> int:
    import distributed

    top: dict[str, Any] = {}
    for name in sorted(distributed.__all__):
        obj = getattr(distributed, name)
        if inspect.isclass(obj):
            top[name] = {"kind": "class", "params": params(obj)}
        elif callable(obj):
            top[name] = {"kind": "function", "params": params(obj)}
        else:
            top[name] = {"kind": "value"}
    classes = {
        "Client": distributed.Client,
        "Future": distributed.Future,
        "as_completed": distributed.as_completed,
        "LocalCluster": distributed.LocalCluster,
        "Queue": distributed.Queue,
        "Variable": distributed.Variable,
        "Event": distributed.Event,
        "Lock": distributed.Lock,
        "Semaphore": distributed.Semaphore,
        "MultiLock": distributed.MultiLock,
        "ActorFuture": distributed.ActorFuture,
    }
    snapshot = {
        "distributed": distributed.__version__,
        "python": sys.version.split()[0],
        "top_level": top,
        "classes": {name: members(cls) for name, cls in classes.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} (distributed {distributed.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
