"""Estimate how many bytes a value occupies.  Cheap and approximate: it decides
whether a result is small enough to travel inline and feeds the placement's
transfer-cost estimate, so it must never be slow."""

from __future__ import annotations

import sys
from typing import Any

_MAX_ITEMS = 20  # containers: sample this many items and extrapolate


def sizeof(obj: Any, _depth: int = 0) -> int:
    t = type(obj)
    if t is bytes or t is bytearray or t is str:
        return sys.getsizeof(obj)
    if t is int or t is float or obj is None or t is bool:
        return sys.getsizeof(obj)
    nbytes = getattr(obj, "nbytes", None)  # numpy, pandas, memoryview, ...
    if isinstance(nbytes, int):
        return int(nbytes) + 100
    if _depth < 3 and t in (list, tuple, set, frozenset):
        n = len(obj)
        if n == 0:
            return sys.getsizeof(obj)
        sample = obj if n <= _MAX_ITEMS else list(obj)[:_MAX_ITEMS]
        per = sum(sizeof(x, _depth + 1) for x in sample) / len(sample)
        return sys.getsizeof(obj) + int(per * n)
    if _depth < 3 and t is dict:
        n = len(obj)
        if n == 0:
            return sys.getsizeof(obj)
        items = list(obj.items())[:_MAX_ITEMS]
        per = sum(sizeof(k, _depth + 1) + sizeof(v, _depth + 1) for k, v in items) / len(items)
        return sys.getsizeof(obj) + int(per * n)
    try:
        return sys.getsizeof(obj)
    except Exception:
        return 64
