"""Checks of a ``submit``/``map`` call's arguments, made in the caller's
thread before anything is sent: a malformed call is a clear ``TypeError`` or
``ValueError`` at the call site, never a failure later on the cluster.

* ``check_call``: the function and the keywords (key, workers, resources,
  retries, priority);
* ``checked``: after the task specs are built: futures that belong to
  another client, and an explicit key this client already uses for a
  different computation (the same key with the same function and
  arguments is the same task, as in dask).

Cheap on purpose: no walk over the arguments (pickling them already found
the futures inside), and digests are kept only for keys given explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Number
from typing import Any


def check_call(func: Any, key: Any, workers: Any, resources: Any, retries: Any, priority: Any,
               what: str) -> None:
    from shoal.client.future import Future

    if isinstance(func, Future):
        raise TypeError(f"First input to {what} must be a callable function, got a Future "
                        "(Future objects are not callable: pass the function, and the future "
                        "as an argument)")
    if not callable(func):
        raise TypeError(f"First input to {what} must be a callable function, got "
                        f"{type(func).__name__}")
    if key is not None and not isinstance(key, str) and not (
            what == "map" and isinstance(key, list) and all(isinstance(k, str) for k in key)):
        raise TypeError(f"{what}(key=...) takes a string{' or a list of strings' * (what == 'map')},"
                        f" got {type(key).__name__}")
    if workers is not None and not isinstance(workers, str):
        try:
            names = list(workers)
        except TypeError:
            raise TypeError(f"{what}(workers=...) takes a worker's address or name, or a list of "
                            f"them, got {type(workers).__name__}") from None
        if not all(isinstance(w, (str, int)) for w in names):
            raise TypeError(f"{what}(workers=...): each worker is an address or a name, got "
                            f"{names!r}")
    if resources is not None and (not isinstance(resources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Number) for k, v in resources.items())):
        raise TypeError(f"{what}(resources=...) takes a dict of resource name -> amount, e.g. "
                        f"{{'GPU': 1}}, got {resources!r}")
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise TypeError(f"{what}(retries=...) takes an int, got {type(retries).__name__}")
        if retries < 0:
            raise ValueError(f"{what}(retries=...) must be >= 0, got {retries}")
    if isinstance(priority, bool) or not isinstance(priority, Number):
        raise TypeError(f"{what}(priority=...) takes a number, got {type(priority).__name__}")


def checked(client: Any, built: tuple[list[Any], bytes, bytes], explicit: bool
            ) -> tuple[list[Any], bytes, bytes]:
    """``built`` (``tasks.build_specs``'s answer), once checked against what
    ``client`` holds."""
    specs, func_id, _ = built
    held = client.futures
    foreign = sorted({d for spec in specs for d in spec.deps if d not in held})
    if foreign:
        raise ValueError(f"Inputs contain futures that were created by another client (or that "
                         f"this client released): {foreign[:5]}; gather them, or scatter the "
                         f"values with this client")
    if explicit:
        _check_explicit_keys(client, specs, func_id)
    return built


def _check_explicit_keys(client: Any, specs: list[Any], func_id: bytes) -> None:
    import hashlib

    digests: dict[str, bytes] = client.__dict__.setdefault("_explicit_keys", {})
    if len(digests) > 2 * len(client.futures) + 1000:  # forget keys the client let go of
        for key in [k for k in digests if k not in client.futures]:
            del digests[key]
    for spec in specs:
        h = hashlib.blake2b(func_id, digest_size=16)
        h.update(bytes(spec.args.data))
        for buffer in spec.args.buffers:
            h.update(memoryview(buffer).cast("B"))
        digest = h.digest()
        st = client.futures.get(spec.key)
        previous = digests.get(spec.key)
        if st is not None and previous is not None and previous != digest and \
                st.status != "cancelled":
            raise ValueError(f"key {spec.key!r} is already used by this client for a different "
                             "task (another function or other arguments): give each task its "
                             "own key")
        digests[spec.key] = digest
