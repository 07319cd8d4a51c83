"""The functions that simulated clients submit.  Module-level, so they pickle
by reference and the simulated workers call the very same objects.

They are pure except ``flaky``, which counts its attempts in a table the
running simulation installs (``attempts``); that is how a task can fail a
few times and then succeed, which exercises ``retries=``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: attempts per flaky token, installed by the running simulation
_attempts: dict[str, int] = {}

BLOB_SIZE = 5000  # above pickle's out-of-band threshold: travels as its own buffer


class SimulatedError(Exception):
    """What the simulated tasks raise on purpose."""


@contextmanager
def attempts(table: dict[str, int]) -> Iterator[None]:
    """Count ``flaky`` attempts in ``table`` for the duration of the block."""
    global _attempts
    previous = _attempts
    _attempts = table
    try:
        yield
    finally:
        _attempts = previous


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def total(xs: list[int]) -> int:
    return sum(xs)


def combine(d: dict[str, int]) -> int:
    return d["a"] * 2 + d["b"]


def fail(x: int) -> int:
    raise SimulatedError(f"fail({x})")


def flaky(token: str, n: int, x: int) -> int:
    """Raise the first ``n`` times it is called with ``token``; then ``3 * x``."""
    count = _attempts.get(token, 0)
    _attempts[token] = count + 1
    if count < n:
        raise SimulatedError(f"flaky({token})")
    return 3 * x


def flaky_value(token: str, n: int, x: int) -> int:
    """What ``flaky`` returns once it stops failing."""
    return 3 * x


class Opaque:
    """A result that does not pickle: it cannot travel inline, and a worker
    that needs it as an input can only use it where it was computed."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque and other.value == self.value

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("Opaque values do not pickle")

    def __repr__(self) -> str:
        return f"Opaque({self.value})"


def opaque(x: int) -> Opaque:
    return Opaque(x)


def unwrap(o: Opaque) -> int:
    return o.value + 7


def make_blob(x: int) -> bytearray:
    return bytearray([x % 256]) * BLOB_SIZE


def blob_value(b: bytearray) -> int:
    return b[0] + len(b)


#: name -> (function, result kind); kinds are "int", "blob" or "opaque"
FUNCTIONS: dict[str, tuple[Any, str]] = {
    "inc": (inc, "int"),
    "add": (add, "int"),
    "total": (total, "int"),
    "combine": (combine, "int"),
    "fail": (fail, "int"),
    "flaky": (flaky, "int"),
    "make_blob": (make_blob, "blob"),
    "blob_value": (blob_value, "int"),
    "opaque": (opaque, "opaque"),
    "unwrap": (unwrap, "int"),
}
