"""Running the cluster: ``run``, ``run_on_scheduler``, ``restart``,
``restart_workers``, ``retire_workers``, ``rebalance``, ``replicate``,
``wait_for_workers`` as methods of ``shoal.Client``.

A mixin of ``shoal.Client`` that uses the client's core (``_sync``,
``_request``) and that the core does not import.  The scheduler's side is
``shoal/scheduler/cluster_control.py``, the workers' ``shoal/worker/control.py``.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class _NoDefault:
    """The default of ``timeout=`` in ``restart``/``restart_workers``: four
    times the client's connect timeout, as in dask.distributed."""

    def __repr__(self) -> str:
        return "<no_default>"


no_default = _NoDefault()

_ON_ERROR = ("raise", "return", "ignore")


def _sync_options(kwargs: dict[str, Any], method: str, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Take ``asynchronous`` and ``callback_timeout`` out of ``kwargs`` (dask's
    ``Client.sync`` takes them from a method's ``**kwargs``); any other key
    not in ``keep`` is a ``TypeError``."""
    options: dict[str, Any] = {
        name: kwargs.pop(name) for name in ("asynchronous", "callback_timeout") if name in kwargs
    }
    unknown = sorted(k for k in kwargs if k not in keep)
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments {unknown}")
    if options.get("callback_timeout") is not None:
        from shoal.units import parse_timedelta

        options["callback_timeout"] = parse_timedelta(options["callback_timeout"])
    return options


class ClusterControl(MixinBase):
    def wait_for_workers(self, n_workers: int, timeout: float | str | None = None,
                         asynchronous: bool | None = None) -> Any:
        """Block until at least ``n_workers`` workers are running (retiring
        ones do not count); ``WorkerStartTimeoutError`` (a ``TimeoutError``)
        if ``timeout`` (seconds, or "30s") passes first."""
        from shoal.units import parse_timedelta

        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ValueError(f"`n_workers` must be a positive integer. Instead got {n_workers!r}.")
        seconds = None if timeout is None else parse_timedelta(timeout)
        return self._sync(self._wait_for_workers, n_workers, seconds, asynchronous=asynchronous)

    async def _wait_for_workers(self, n_workers: int, timeout: float | None) -> None:
        await self._request("wait_for_workers", n=n_workers, timeout=timeout)

    # -- running functions outside the task system ----------------------------------

    def run(self, function: Callable[..., Any], *args: Any, workers: Any = None, wait: bool = True,
            nanny: bool = False, on_error: str = "raise", **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` on every worker (or on
        ``workers``: addresses or names) right now, outside the task system,
        on each worker's event loop; return ``{worker address: result}``.

        A ``dask_worker`` argument of ``function`` receives the worker.  A
        coroutine function is awaited there.  ``wait=False``: start it and
        return None at once.  ``on_error``: "raise" the first worker's error,
        "return" it in place of that worker's result, or "ignore" that
        worker.  ``nanny=True`` is not supported (see docs/usage.md)."""
        options = _sync_options(kwargs, "run", keep=tuple(kwargs))
        if not callable(function):
            raise TypeError(f"run() needs a function, got {type(function).__name__}")
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise', 'return', or 'ignore'; got {on_error!r}")
        if nanny:
            raise NotImplementedError(
                "client.run(nanny=True): shoal has no nanny process per worker: one supervisor "
                "watches all the workers of a LocalCluster (a thread in the client's process) or "
                "of a `shoal worker` command (a process that is not connected to the scheduler). "
                "Run the function on the workers (nanny=False) instead.")
        from shoal.client.introspection import worker_list

        return self._sync(self._run, function, args, kwargs, worker_list(workers), wait, on_error,
                          **options)

    async def _run(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   workers: list[str] | None, wait: bool, on_error: str) -> Any:
        from shoal.protocol.serialize import dumps, loads, loads_exception

        answers = await self._request("run", function=dumps(function), args=dumps((args, kwargs)),
                                      workers=workers, wait=wait)
        results: dict[str, Any] = {}
        for address, answer in answers.items():
            if answer[0] == "ok":
                results[address] = loads(answer[1])
                continue
            error = loads_exception(answer[1], answer[2], answer[3])
            if on_error == "raise":
                raise error
            if on_error == "return":
                results[address] = error
        return results if wait else None

    def run_on_scheduler(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the scheduler process.  If it
        takes a ``dask_scheduler`` (or ``scheduler``) argument it receives the
        scheduler; a coroutine function runs on the scheduler's event loop."""
        asynchronous = kwargs.pop("asynchronous", None)
        return self._sync(self._run_on_scheduler, function, args, kwargs, asynchronous=asynchronous)

    async def _run_on_scheduler(self, function: Callable[..., Any], args: tuple[Any, ...],
                                kwargs: dict[str, Any]) -> Any:
        from shoal.protocol.serialize import dumps, loads

        result = await self._request(
            "run_on_scheduler", function=dumps(function), args=dumps((args, kwargs))
        )
        return loads(result)

    # -- restarting ------------------------------------------------------------------------

    def _control_timeout(self, timeout: Any) -> float | None:
        """``timeout=`` of restart calls: seconds, or None for no limit."""
        if timeout is no_default:
            return float(self.timeout) * 4
        if timeout is None:
            return None
        from shoal.units import parse_timedelta

        return parse_timedelta(timeout)

    def _request_within(self, seconds: float | None) -> Callable[..., Any]:
        """``_request`` that waits for the answer at most a little longer than
        the scheduler's own ``seconds`` (its TimeoutError says more)."""
        from functools import partial

        return partial(self._request, _timeout=None if seconds is None else seconds + 30)

    def restart(self, timeout: float | str | _NoDefault | None = no_default,
                wait_for_workers: bool = True) -> Any:
        """Restart every worker with a fresh process, and forget every task:
        the futures of every client are cancelled (``CancelledError`` saying
        the cluster restarted).  With ``wait_for_workers``, return once as
        many workers as before are back; ``TimeoutError`` after ``timeout``
        seconds (default: four times the client's connect timeout; None: no
        limit).  Workers with no supervisor are closed, not restarted."""
        seconds = self._control_timeout(timeout)
        return self._sync(self._request_within(seconds), "restart", timeout=seconds,
                          wait_for_workers=bool(wait_for_workers))

    def restart_workers(self, workers: list[str], timeout: float | str | _NoDefault | None = no_default,
                        raise_for_error: bool = True) -> Any:
        """Restart these workers (addresses or names) with fresh processes and
        wait until as many are back; their tasks are rescheduled and their
        results recomputed, as when a worker dies.  Returns ``{worker as
        given: "OK" | "timed out"}``; with ``raise_for_error`` a timeout
        raises ``TimeoutError`` instead."""
        from shoal.client.introspection import worker_list

        names = worker_list(workers)
        if not names:
            raise ValueError("restart_workers() needs the workers to restart")
        seconds = self._control_timeout(timeout)
        return self._sync(self._request_within(seconds), "restart_workers", workers=names,
                          timeout=seconds, raise_for_error=bool(raise_for_error))

    # -- retiring and moving data -------------------------------------------------------

    def retire_workers(self, workers: list[str] | None = None, close_workers: bool = True,
                       **kwargs: Any) -> Any:
        """Retire workers gracefully: every result only they hold is copied to
        the other workers first (nothing is lost or recomputed), then they
        leave for good (their supervisor does not restart them).  Returns
        ``{address: worker info}`` of the workers retired; a worker whose
        data could go nowhere (no other running worker) or that holds an
        actor stays and is left out.

        ``workers``: addresses (unknown ones are skipped, as in dask);
        ``names=``: worker names instead; neither: the idle workers that
        hold least (dask's ``workers_to_close``: ``n=``, ``target=``,
        ``minimum=``, ``memory_ratio=``).  ``remove=False``: leave them in
        the scheduler's list until they go (with ``close_workers=False``
        they stay there, taking no new tasks)."""
        options = _sync_options(kwargs, "retire_workers", keep=(
            "names", "remove", "n", "target", "minimum", "memory_ratio", "key", "attribute"))
        if kwargs.get("key") is not None:
            raise NotImplementedError(
                "retire_workers(key=...): the grouping function would have to run on the "
                "scheduler, which never runs user code; choose the workers with workers= or names=")
        from shoal.client.introspection import worker_list

        names = kwargs.pop("names", None)
        return self._sync(self._request, "retire_workers", workers=worker_list(workers),
                          names=None if names is None else list(names),
                          close_workers=bool(close_workers), **kwargs, **options)

    def rebalance(self, futures: Any = None, workers: Any = None, **kwargs: Any) -> Any:
        """Even out the bytes of results the workers hold: results (of
        ``futures``, or all) move from the fullest workers to the emptiest
        ones (a copy is made, then the original dropped), among ``workers``
        (addresses or names; default all).  Waits for ``futures`` first;
        ``KeyError`` if one has no data on any worker."""
        options = _sync_options(kwargs, "rebalance")
        from shoal.client.introspection import worker_list

        return self._sync(self._rebalance, futures, worker_list(workers), **options)

    async def _rebalance(self, futures: Any, workers: list[str] | None) -> None:
        keys = None if futures is None else await self._keys_when_done(futures)
        result = await self._request("rebalance", keys=keys, workers=workers)
        if result["status"] == "partial-fail":
            raise KeyError(f"Could not rebalance keys: {result['keys']}")

    def replicate(self, futures: Any, n: int | None = None, workers: Any = None,
                  branching_factor: int = 2, **kwargs: Any) -> Any:
        """Hold the result of each future on ``n`` workers (all of
        ``workers``, or of the cluster, when None): copies are made in a tree,
        ``branching_factor`` new ones per existing copy at a time, and extra
        copies among those workers dropped.  The scheduler's ``who_has``
        lists every copy; releasing the futures frees them all.  Waits for
        the futures first; ``KeyError`` if one has no data on any worker."""
        options = _sync_options(kwargs, "replicate")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
            raise TypeError(f"n must be an int or None, got {n!r}")
        if not isinstance(branching_factor, int) or branching_factor < 1:
            raise ValueError(f"branching_factor must be a positive int, got {branching_factor!r}")
        from shoal.client.introspection import worker_list

        return self._sync(self._replicate, futures, n, worker_list(workers), branching_factor,
                          **options)

    async def _replicate(self, futures: Any, n: int | None, workers: list[str] | None,
                         branching_factor: int) -> None:
        keys = await self._keys_when_done(futures)
        if keys:
            await self._request("replicate", keys=keys, n=n, workers=workers,
                                branching_factor=branching_factor)

    async def _keys_when_done(self, futures: Any) -> list[str]:
        """The keys of the futures in ``futures``, once they are all done."""
        from shoal.client.structure import futures_in

        states = [f._state for f in futures_in(futures)]
        await self._wait_states_async(states, None)
        return list(dict.fromkeys(st.key for st in states))
