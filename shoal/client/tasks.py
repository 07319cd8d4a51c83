"""Turning calls into task specs: keys, pickled arguments, dependencies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from shoal.client.digest import content_digest
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps_function, dumps_task_args


def funcname(func: Any) -> str:
    """The name in a task's key: ``inc`` for ``inc``, ``lambda`` for lambdas."""
    while hasattr(func, "func") and callable(func.func) and not hasattr(func, "__name__"):
        func = func.func  # functools.partial
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "<lambda>":
        return "lambda"
    return str(name).replace("-", "_") or "task"


def token(func_id: bytes, payload: Payload) -> str:
    """A hash of the function and its pickled arguments: the pure key."""
    return content_digest(payload, func_id)


def build_specs(
    func: Callable[..., Any],
    all_args: list[tuple[Any, ...]],
    kwargs: dict[str, Any],
    keys: list[str] | None,
    pure: bool,
    workers: Any,
    resources: dict[str, float] | None,
    retries: int | None,
    priority: int,
    allow_other_workers: bool,
    actor: bool,
) -> tuple[list[m.TaskSpec], bytes, bytes]:
    """One spec per argument tuple, and the function's ``(id, blob)``,
    pickled once for all of them."""
    func_id, blob = dumps_function(func)
    name = funcname(func)
    if isinstance(workers, str):
        workers = [workers]
    elif workers is not None:
        workers = list(workers)
    uid = None if pure else uuid.uuid4().hex
    specs = []
    for i, args in enumerate(all_args):
        payload, deps = dumps_task_args(args, kwargs)
        if keys is not None:
            k = keys[i]
        elif pure:
            k = f"{name}-{token(func_id, payload)}"
        elif len(all_args) == 1:
            k = f"{name}-{uid}"
        else:
            k = f"{name}-{uid}-{i}"
        specs.append(
            m.TaskSpec(
                k,
                func_id,
                payload,
                tuple(sorted(deps)) if deps else (),
                priority,
                retries or 0,
                workers,
                allow_other_workers,
                resources,
                actor,
            )
        )
    return specs, func_id, blob
