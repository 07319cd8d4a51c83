"""Sizes and durations as people write them: ``"4GB"``, ``"512 MiB"``,
``"30s"``, ``"500ms"``, and back.

Used by the configuration (every size and duration there may be written
either way), the command line (``--memory-limit 4GB``) and cluster keywords
(``memory_limit="2GiB"``).  Pure functions, no imports beyond the standard
library, so that anything may use them early.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: config is read before anything heavy
if TYPE_CHECKING:
    from typing import Any

_BYTE_UNITS = {
    "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}

_TIME_UNITS = {
    "ns": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
    "us": 1e-6, "µs": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "ms": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}


def _split_number(text: str) -> tuple[float, str]:
    """``"4.5 GiB"`` -> ``(4.5, "gib")``; raises ValueError without a number."""
    s = text.strip().lower().replace(" ", "").replace("_", "")
    i = len(s)
    while i and not (s[i - 1].isdigit() or s[i - 1] == "."):
        i -= 1
    number, unit = s[:i], s[i:]
    if not number:
        raise ValueError(f"no number in {text!r}")
    return float(number), unit


def parse_bytes(value: Any) -> int:
    """A size in bytes: an int, or a string such as ``"4GB"``, ``"512 MiB"``,
    ``"1e9"``, ``"100"`` (bytes).  Decimal units are powers of 1000, binary
    ones (KiB, MiB...) powers of 1024, as in dask."""
    if isinstance(value, bool):
        raise TypeError(f"a size must be a number of bytes or a string like '4GB', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise TypeError(f"a size must be a number of bytes or a string like '4GB', got {value!r}")
    try:
        number, unit = _split_number(value)
        factor = _BYTE_UNITS[unit or "b"]
    except (KeyError, ValueError):
        raise ValueError(f"cannot understand the size {value!r} (try '4GB', '512MiB' or a number "
                         "of bytes)") from None
    return int(number * factor)


def parse_timedelta(value: Any, default_unit: str = "s") -> float:
    """A duration in seconds: a number (in ``default_unit``), or a string such
    as ``"30s"``, ``"500ms"``, ``"2 minutes"``; ``None`` stays ``None``'s
    business (the caller decides what no limit means)."""
    if isinstance(value, bool):
        raise TypeError(f"a duration must be a number or a string like '30s', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * _TIME_UNITS[default_unit]
    if not isinstance(value, str):
        raise TypeError(f"a duration must be a number or a string like '30s', got {value!r}")
    try:
        number, unit = _split_number(value)
        factor = _TIME_UNITS[unit or default_unit]
    except (KeyError, ValueError):
        raise ValueError(f"cannot understand the duration {value!r} (try '30s', '500ms' or "
                         "'2 minutes')") from None
    return number * factor


def format_bytes(n: float) -> str:
    """``format_bytes(2_500_000)`` -> ``"2.38 MiB"``."""
    for unit, factor in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                         ("kiB", 2**10)):
        if abs(n) >= factor * 0.9:
            return f"{n / factor:.2f} {unit}"
    return f"{int(n)} B"


def format_time(seconds: float) -> str:
    """``format_time(0.0123)`` -> ``"12.30 ms"``."""
    if seconds >= 24 * 3600:
        return f"{seconds / 3600:.2f} hr"
    if seconds >= 60:
        return f"{seconds / 60:.2f} m"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} us"
