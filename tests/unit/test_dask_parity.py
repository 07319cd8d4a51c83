"""shoal offers dask.distributed's futures API name for name and keyword for
keyword: every name in ``distributed.__all__``, every public member of the
classes users touch, and every parameter of every callable, in the same
positional order.  What is still missing is listed in ``GAPS`` with the
reason; the test fails both when something new is missing and when a listed
gap has been filled (so the list only shrinks).

The reference is ``tests/data/dask_api.json``, written from the installed
package by ``scripts/dask_api_snapshot.py`` (dask.distributed is not needed
to run this test).
"""

from __future__ import annotations

import inspect
import json
import pathlib
from typing import Any

import shoal

SNAPSHOT = json.loads((pathlib.Path(__file__).resolve().parents[1] / "data" / "dask_api.json").read_text())

#: callables whose **kwargs have a meaning of their own (they go to the
#: user's function, to LocalCluster, ...), so dask's extra keywords need not
#: be named in shoal's signature
KWARGS_FORWARDED = {
    "Client.__init__", "Client.submit", "Client.map", "Client.run", "Client.run_on_scheduler",
    "Client.sync", "LocalCluster.__init__", "sync", "Client.get",
}

#: dask names shoal does not have yet, and why: remove a line once it's built
GAPS: dict[str, str] = {
    'ActorFuture.__init__(io_loop=)': 'deliberate: made by shoal, never by users; it holds a concurrent future, not an IOLoop',
    'ActorFuture.__init__(positional order)': 'deliberate: made by shoal, never by users',
    'as_completed.condition': 'deliberate: the asyncio.Condition inside dask\'s implementation, not an interface; shoal\'s as_completed has none',
}


def _shoal_object(path: str) -> Any:
    owner, _, member = path.partition(".")
    obj = getattr(shoal, owner)
    return getattr(obj, member) if member else obj


def _params(obj: Any) -> list[inspect.Parameter] | None:
    try:
        return [p for p in inspect.signature(obj).parameters.values() if p.name not in ("self", "cls")]
    except (TypeError, ValueError):
        return None


def _check_params(path: str, dask_params: list[dict[str, str]] | None, obj: Any, gaps: dict[str, str]) -> None:
    if dask_params is None:
        return
    ours = _params(obj)
    if ours is None:
        gaps[path] = "no signature"
        return
    names = {p.name for p in ours}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in ours)
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in ours)
    for p in dask_params:
        if p["kind"] == "VAR_POSITIONAL":
            if not var_pos:
                gaps[f"{path}(*{p['name']})"] = "no *args"
            continue
        if p["kind"] == "VAR_KEYWORD":
            continue
        if p["name"] not in names and not (var_kw and path in KWARGS_FORWARDED):
            gaps[f"{path}({p['name']}=)"] = "keyword missing"
    dask_positional = [p["name"] for p in dask_params if p["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    our_positional = [p.name for p in ours if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if our_positional[: len(dask_positional)] != dask_positional and not var_pos:
        gaps[f"{path}(positional order)"] = f"dask {dask_positional} vs shoal {our_positional}"


def find_gaps() -> dict[str, str]:
    gaps: dict[str, str] = {}
    for name, info in SNAPSHOT["top_level"].items():
        try:
            obj = getattr(shoal, name)
        except AttributeError:
            gaps[name] = "missing"
            continue
        if info["kind"] == "function":
            _check_params(name, info.get("params"), obj, gaps)
    for cls_name, cls_members in SNAPSHOT["classes"].items():
        cls = getattr(shoal, cls_name, None)
        if cls is None:
            continue  # reported above
        for member, info in cls_members.items():
            path = f"{cls_name}.{member}"
            if not hasattr(cls, member):
                gaps[path] = "missing"
                continue
            if info["kind"] == "method":
                _check_params(path, info.get("params"), getattr(cls, member), gaps)
    return gaps


def test_every_dask_name_and_keyword_is_in_shoal_or_listed_as_a_gap() -> None:
    gaps = find_gaps()
    new = {k: v for k, v in gaps.items() if k not in GAPS}
    filled = sorted(set(GAPS) - set(gaps))
    assert not new, f"dask names or keywords shoal lacks (build them, or list them in GAPS): {new}"
    assert not filled, f"these gaps are filled now: remove them from GAPS: {filled}"


def test_the_snapshot_is_of_the_dask_the_benchmarks_compare_with() -> None:
    assert SNAPSHOT["distributed"].startswith("2026.")
