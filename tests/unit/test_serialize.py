"""Serialization of user data, functions, task arguments and exceptions."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from shoal.errors import RemoteException, RemoteTraceback, SerializationError
from shoal.protocol.serialize import (
    collecting_dependencies,
    dumps,
    dumps_exception,
    dumps_function,
    dumps_task_args,
    loads,
    loads_exception,
    loads_function,
    loads_task_args,
)


def test_plain_objects_and_lambdas() -> None:
    assert loads(dumps({"a": [1, 2.5, "x"]})) == {"a": [1, 2.5, "x"]}
    f = loads(dumps(lambda x: x * 3))  # needs cloudpickle
    assert f(2) == 6


def test_numpy_goes_out_of_band_and_small_buffers_stay_in_band() -> None:
    big = np.ones(10_000)
    p = dumps(big)
    assert len(p.buffers) == 1 and len(p.data) < 500
    assert (loads(p) == big).all()
    assert not dumps(np.ones(3)).buffers


def test_unpicklable_objects_raise_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="lock"):
        dumps(threading.Lock())


def test_functions_are_pickled_once_and_identified_by_content() -> None:
    def double(x: int) -> int:
        return 2 * x

    fid, blob = dumps_function(double)
    assert dumps_function(double) == (fid, blob)
    assert loads_function(blob)(4) == 8


class Holder:
    def __init__(self, ref: object) -> None:
        self.ref = ref


class FakeFuture:
    """Behaves like shoal's Future when pickled inside task arguments."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self):  # type: ignore[no-untyped-def]
        from shoal.protocol.serialize import resolve_dependency

        deps = collecting_dependencies()
        assert deps is not None
        deps.add(self.key)
        return (resolve_dependency, (self.key,))


def test_dependencies_are_found_anywhere_in_the_arguments() -> None:
    args = ([FakeFuture("a"), {"k": (FakeFuture("b"),)}], Holder(FakeFuture("c")))
    payload, deps = dumps_task_args(args, {"kw": FakeFuture("d")})
    assert deps == {"a", "b", "c", "d"}
    a, kw = loads_task_args(payload, {"a": 1, "b": 2, "c": 3, "d": 4})
    assert a[0] == [1, {"k": (2,)}] and a[1].ref == 3 and kw == {"kw": 4}


def test_arguments_that_look_like_args_and_kwargs_stay_as_given() -> None:
    payload, _ = dumps_task_args(((1, 2), {}), {})
    assert loads_task_args(payload, {}) == (((1, 2), {}), {})


def inner_failure() -> None:
    raise ValueError("bad value")


def test_exceptions_keep_their_type_and_traceback() -> None:
    try:
        inner_failure()
    except ValueError as e:
        exc, tb, text = dumps_exception(e)
    rebuilt = loads_exception(exc, tb, text)
    assert type(rebuilt) is ValueError and str(rebuilt) == "bad value"
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    names = []
    t = rebuilt.__traceback__
    while t is not None:
        names.append(t.tb_frame.f_code.co_name)
        t = t.tb_next
    assert "inner_failure" in names


class Unpicklable(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("no")


def _fail_on_load() -> None:
    raise TypeError("cannot rebuild")


class Unloadable(Exception):
    """Pickles, but cannot be unpickled."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_fail_on_load, ())


def test_exceptions_that_cannot_travel_are_replaced() -> None:
    for err in (Unpicklable("x"), Unloadable("y")):
        exc, tb, text = dumps_exception(err)
        rebuilt = loads_exception(exc, tb, text)
        assert isinstance(rebuilt, RemoteException)
        assert rebuilt.type_name == type(err).__name__
