"""Submitting work: ``submit`` and ``map``, as methods of ``shoal.Client``.

They check the call, pickle the function once and the arguments in the
calling thread (``tasks.build_specs``), and hand the task specs to the
core's ``_submit_specs``, which sends them and makes the futures.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from shoal.client.future import Future


class Submitting(MixinBase):
    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: str | None = None,
        workers: Any = None,
        resources: dict[str, float] | None = None,
        retries: int | None = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool | None = None,
        fifo_timeout: Any = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """Run ``func(*args, **kwargs)`` on the cluster; return a ``Future`` at once."""
        from shoal.client import checks, tasks

        checks.check_call(func, key, workers, resources, retries, priority, "submit")
        actor = actor or actors
        if pure is None:
            pure = not actor
        self._check_open()  # before pickling anything
        futures = self._submit_specs(*checks.checked(self, tasks.build_specs(
            func, [args], kwargs, [key] if key is not None else None, pure,
            workers, resources, retries, priority, allow_other_workers, actor,
        ), explicit=key is not None))
        return futures[0]

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        workers: Any = None,
        retries: int | None = None,
        resources: dict[str, float] | None = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        fifo_timeout: Any = None,
        actor: bool = False,
        actors: bool = False,
        pure: bool | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future[Any]]:
        """``submit`` for every element of the iterables (zipped); the function
        is pickled and sent once for the whole batch."""
        from shoal.client import checks, tasks

        checks.check_call(func, key, workers, resources, retries, priority, "map")
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if any(isinstance(it, (str, bytes, dict)) or not hasattr(it, "__iter__") for it in iterables):
            raise TypeError("map() takes iterables of arguments (lists, tuples, ranges...), not "
                            f"{', '.join(type(it).__name__ for it in iterables)}")
        all_args = list(zip(*iterables))
        actor = actor or actors
        if pure is None:
            pure = not actor
        keys: list[str] | None = None
        if isinstance(key, list):
            if len(key) != len(all_args):
                raise ValueError(f"{len(key)} keys given for {len(all_args)} tasks")
            keys = key
        elif isinstance(key, str):
            keys = [f"{key}-{i}" for i in range(len(all_args))]
        self._check_open()  # before pickling anything
        return self._submit_specs(*checks.checked(self, tasks.build_specs(
            func, all_args, kwargs, keys, pure, workers, resources, retries, priority,
            allow_other_workers, actor,
        ), explicit=keys is not None))

