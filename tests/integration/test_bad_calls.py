"""Malformed calls raise a clear TypeError or ValueError where they are
made, and the client (and cluster) go on working."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shoal import Client


def inc(x: int) -> int:
    return x + 1


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda c: c.submit(1), TypeError, "callable function, got int"),
    (lambda c: c.submit(None), TypeError, "callable function, got NoneType"),
    (lambda c: c.submit(c.submit(inc, 1)), TypeError, "Future objects are not callable"),
    (lambda c: c.map("inc", [1]), TypeError, "callable function, got str"),
    (lambda c: c.map(inc, 5), TypeError, "iterables of arguments"),
    (lambda c: c.map(inc, None), TypeError, "iterables of arguments"),
    (lambda c: c.map(inc, "abc"), TypeError, "iterables of arguments"),
    (lambda c: c.submit(inc, 1, key=5), TypeError, "key=...\\) takes a string"),
    (lambda c: c.map(inc, [1], key=[1]), TypeError, "list of strings"),
    (lambda c: c.map(inc, [1, 2], key=["a"]), ValueError, "1 keys given for 2 tasks"),
    (lambda c: c.submit(inc, 1, workers=5), TypeError, "workers"),
    (lambda c: c.submit(inc, 1, resources=5), TypeError, "resources"),
    (lambda c: c.submit(inc, 1, resources={"GPU": "one"}), TypeError, "resources"),
    (lambda c: c.submit(inc, 1, retries=-1), ValueError, "retries"),
    (lambda c: c.submit(inc, 1, retries="3"), TypeError, "retries"),
    (lambda c: c.submit(inc, 1, priority="high"), TypeError, "priority"),
    (lambda c: c.gather([1, 2], errors="ignore"), ValueError, "errors"),
])
def test_malformed_calls_fail_at_the_call_site(client: Client, call: Callable[[Client], Any],
                                                error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(client)
    assert client.submit(inc, 41).result(timeout=30) == 42  # nothing else broke


def test_futures_of_another_client_are_refused(client: Client) -> None:
    with Client(n_workers=1, threads_per_worker=1, processes=False) as other:
        theirs = other.submit(inc, 1)
        assert theirs.result(timeout=30) == 2
        with pytest.raises(ValueError, match="created by another client"):
            client.submit(inc, theirs)
        with pytest.raises(ValueError, match="created by another client"):
            client.map(inc, [theirs])
        with pytest.raises(ValueError, match="Cannot gather Futures created by another client"):
            client.gather([theirs])
    assert client.submit(inc, 1).result(timeout=30) == 2


def test_an_explicit_key_names_one_task(client: Client) -> None:
    """The same key with the same call is the same task (as in dask); with
    another function or other arguments it is an error, not a silent mix-up."""
    first = client.submit(inc, 1, key="my-key")
    again = client.submit(inc, 1, key="my-key")
    assert again.key == first.key and again.result(timeout=30) == 2
    with pytest.raises(ValueError, match="'my-key' is already used by this client"):
        client.submit(inc, 2, key="my-key")
    with pytest.raises(ValueError, match="already used"):
        client.submit(str, 1, key="my-key")
    with pytest.raises(ValueError, match="already used"):
        client.map(inc, [5, 6], key=["other-key", "my-key"])
    assert first.result(timeout=30) == 2
    del first, again
