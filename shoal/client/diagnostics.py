"""Looking inside running work: ``get_task_stream``, ``profile``,
``call_stack``, ``get_worker_logs``, ``get_scheduler_logs``, ``get_versions``,
``dump_cluster_state`` and ``benchmark_hardware`` as methods of ``shoal.Client``.

A mixin of ``shoal.Client`` that uses the client's core (``_sync``,
``_request``).  The scheduler gathers the answers from the workers
(``shoal/scheduler/observability.py``, ``shoal/worker/observability.py``);
what happens on this side is checking arguments, comparing versions and
writing files (HTML pages, cluster dumps).  Where dask returns a bokeh
figure shoal writes a standalone HTML page instead (``shoal.diagnostics.html``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Any

    from shoal.client.core import ClientCore as _Base
else:
    _Base = object


def unix_time(value: Any, label: str) -> float | None:
    """``start=``/``stop=``: None, a unix time, or a duration before now ("60s")."""
    import time

    if value is None:
        return None
    if isinstance(value, str):
        from shoal.units import parse_timedelta

        return time.time() - parse_timedelta(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{label} must be a unix time or a duration before now like '60s', got {value!r}")


def check_plot(plot: Any, method: str) -> None:
    if plot not in (False, True, "save"):
        raise ValueError(f"{method}: plot must be False, True or 'save', got {plot!r}")


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class Diagnostics(_Base):
    def get_task_stream(self, start: Any = None, stop: Any = None, count: int | None = None,
                        plot: bool | str = False, filename: str = "task-stream.html",
                        bokeh_resources: Any = None, asynchronous: bool | None = None) -> Any:
        """One record per task run on the workers, oldest first:
        ``{"key", "worker", "thread", "startstops": [{"action", "start",
        "stop"}...], "status", "nbytes", "type"}`` (unix times; ``action``
        "compute", or "transfer" for fetching a dependency).

        ``start``/``stop``: unix times, or durations before now ("60s");
        ``count``: the last so many (the first so many after ``start``).
        Workers record every run (at most ``worker.task-stream-length``
        each), so nothing needs priming as in dask.  ``plot="save"`` also
        writes a standalone HTML chart to ``filename`` and returns
        ``(records, None)``; ``plot=True`` (a bokeh figure) is not available.
        """
        check_plot(plot, "get_task_stream")
        if plot is True:
            raise NotImplementedError(
                "get_task_stream(plot=True) returns a bokeh figure in dask.distributed; shoal "
                "draws none: use plot='save' (with filename=) for a standalone HTML page")
        if bokeh_resources is not None:
            raise NotImplementedError("get_task_stream(bokeh_resources=...): shoal's HTML page "
                                      "is self-contained and uses no bokeh resources")
        from shoal.diagnostics.task_stream import check_count

        return self._sync(self._get_task_stream, unix_time(start, "start"), unix_time(stop, "stop"),
                          check_count(count), plot, filename, asynchronous=asynchronous)

    async def _get_task_stream(self, start: float | None, stop: float | None, count: int | None,
                               plot: bool | str, filename: str) -> Any:
        records = await self._request("get_task_stream", start=start, stop=stop, count=count)
        if plot == "save":
            await save_task_stream(records, filename)
            return records, None
        return records

    def profile(self, key: str | None = None, start: Any = None, stop: Any = None,
                workers: Any = None, merge_workers: bool = True, plot: bool | str = False,
                filename: str | None = None, server: bool = False, scheduler: bool = False,
                asynchronous: bool | None = None) -> Any:
        """Sampled call stacks of the tasks run on the workers, as one call
        tree (dask's layout: ``{"count", "children", "description",
        "identifier"}``; ``shoal.diagnostics.profiling`` describes it).

        key: a key prefix (a function name like "inc"): only its tasks.
        start, stop: unix times or durations before now ("60s").
        workers: addresses or names (default: all).
        merge_workers: False gives ``{worker: tree}``.
        server: the workers' event loop threads instead of their tasks;
        scheduler: the scheduler's event loop thread.  Both are sampled from
        the first such request on (as dask primes its task stream).
        filename (or plot="save"): also write a standalone HTML flame graph
        there (default "shoal-profile.html") and return ``(tree, None)``, the
        shape of dask's ``(tree, figure)``; ``plot=True`` alone would need a
        bokeh figure and is not available.
        """
        check_plot(plot, "profile")
        if plot is True and not filename:
            raise NotImplementedError(
                "profile(plot=True) returns a bokeh figure in dask.distributed; shoal draws "
                "none: pass filename= (or plot='save') for a standalone HTML flame graph")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a key prefix (a function name), got {key!r}")
        from shoal.client.introspection import worker_list

        if plot == "save" and not filename:
            filename = "shoal-profile.html"
        return self._sync(
            self._profile, key, unix_time(start, "start"), unix_time(stop, "stop"),
            worker_list(workers), bool(merge_workers), filename, bool(server), bool(scheduler),
            asynchronous=asynchronous,
        )

    async def _profile(self, key: str | None, start: float | None, stop: float | None,
                       workers: list[str] | None, merge_workers: bool, filename: str | None,
                       server: bool, scheduler: bool) -> Any:
        tree = await self._request("profile", key=key, start=start, stop=stop, workers=workers,
                                   merge_workers=merge_workers, server=server, scheduler=scheduler)
        if not filename:
            return tree
        import asyncio

        from shoal import config
        from shoal.diagnostics import html, profiling

        whole = tree if merge_workers else profiling.merge(*tree.values())
        page = html.flame_graph(whole, "shoal profile" + (f": {key}" if key else ""),
                                config.duration("worker.profile.interval") or 0.01)
        await asyncio.to_thread(write_text, filename, page)
        return tree, None

    def call_stack(self, futures: Any = None, keys: Any = None,
                   asynchronous: bool | None = None) -> Any:
        """``{worker: {key: [frame lines, outermost first]}}`` of the tasks
        running now: of ``futures`` and ``keys`` (and of what the waiting
        ones among them wait for), or of every running task."""
        from shoal.client.introspection import keys_of

        wanted = (keys_of(keys) or []) + (keys_of(futures) or [])
        return self._sync(self._request, "call_stack", keys=wanted or None, asynchronous=asynchronous)

    def get_worker_logs(self, n: int | None = None, workers: Any = None, nanny: bool = False,
                        asynchronous: bool | None = None) -> Any:
        """``{worker: [(level, line), ...]}``, newest first, at most ``n``
        each (each worker keeps ``worker.log-length`` lines): shoal's records
        of INFO and up, and what user code in tasks logs at the root
        logger's level.  ``nanny=True``: shoal has no nanny processes (a
        supervisor in the process that started the workers restarts them;
        ``LocalCluster.get_logs()`` shows its lines)."""
        if nanny:
            raise NotImplementedError(
                "get_worker_logs(nanny=True): shoal runs no nanny processes; the supervisor "
                "that restarts workers logs in the process that started them "
                "(LocalCluster.get_logs() shows it)")
        from shoal.client.introspection import worker_list

        _check_n(n)
        return self._sync(self._worker_logs, n, worker_list(workers), asynchronous=asynchronous)

    async def _worker_logs(self, n: int | None, workers: list[str] | None) -> dict[str, Any]:
        logs = await self._request("worker_logs", n=n, workers=workers)
        return {w: [(level, text) for level, text in lines] for w, lines in logs.items()}

    def get_scheduler_logs(self, n: int | None = None, asynchronous: bool | None = None) -> Any:
        """``[(level, line), ...]`` of the scheduler, newest first, at most
        ``n`` (it keeps ``admin.log-length`` lines)."""
        _check_n(n)
        return self._sync(self._scheduler_logs, n, asynchronous=asynchronous)

    async def _scheduler_logs(self, n: int | None) -> list[tuple[str, str]]:
        lines = await self._request("logs", n=n)
        return [(level, text) for level, text in lines]

    def get_versions(self, check: bool = False, packages: Sequence[str] | None = None,
                     asynchronous: bool | None = None) -> Any:
        """``{"client": v, "scheduler": v, "workers": {address: v}}``, each
        ``v`` ``{"host": {...}, "packages": {name: version}}`` (Python, shoal
        and its dependencies, numpy, pandas, dask, and ``packages``).
        ``check=True`` warns (``shoal.diagnostics.versions.
        VersionMismatchWarning``) when the processes' versions differ."""
        names = [packages] if isinstance(packages, str) else list(packages or [])
        return self._sync(self._get_versions, bool(check), names, asynchronous=asynchronous)

    async def _get_versions(self, check: bool, packages: list[str]) -> dict[str, Any]:
        from shoal.diagnostics import versions

        client = versions.get_versions(packages)
        answer = await self._request("versions", packages=packages)
        result = {"scheduler": answer["scheduler"], "workers": answer["workers"], "client": client}
        if check:
            versions.warn_mismatches(versions.mismatches(client, answer["scheduler"], answer["workers"]))
        return result

    def dump_cluster_state(self, filename: str = "shoal-cluster-dump",
                           write_from_scheduler: bool | None = None, exclude: Collection[str] = (),
                           format: str = "msgpack", asynchronous: bool | None = None,
                           **storage_options: Any) -> Any:
        """Write the scheduler's and every worker's state to
        ``filename.msgpack.gz`` (gzipped msgpack) or ``filename.yaml``, for
        debugging (``shoal.diagnostics.cluster_dump.load`` reads it back;
        docs/usage.md describes the layout).  ``exclude``: field names to
        leave out.  ``write_from_scheduler=True`` writes on the scheduler's
        machine instead of here.  Returns the path written."""
        from shoal.diagnostics import cluster_dump

        if storage_options:
            raise NotImplementedError(f"dump_cluster_state(**storage_options) (got "
                                      f"{sorted(storage_options)}): shoal writes local files only")
        name = str(filename)
        if "://" in name:
            raise NotImplementedError(f"dump_cluster_state({name!r}): shoal writes local files "
                                      "only, not URLs")
        cluster_dump.check_format(format)
        if isinstance(exclude, str):
            exclude = [exclude]
        return self._sync(self._dump_cluster_state, name, bool(write_from_scheduler),
                          sorted(exclude), format, asynchronous=asynchronous)

    async def _dump_cluster_state(self, filename: str, on_scheduler: bool, exclude: list[str],
                                  format: str) -> str:
        if on_scheduler:
            path: str = await self._request("dump_cluster_state", filename=filename,
                                            exclude=exclude, format=format)
            return path
        import asyncio

        from shoal.diagnostics import cluster_dump

        state = await self._request("cluster_state", exclude=exclude)
        return await asyncio.to_thread(cluster_dump.write, state, filename, format)

    def benchmark_hardware(self, asynchronous: bool | None = None) -> Any:
        """Bandwidths measured on the workers, ``{"memory"|"disk"|"network":
        {size: bytes per second}}``, averaged over the workers (network:
        between pairs of workers, so it needs two).  Takes about
        ``admin.benchmark-duration`` (1 s), not dask's ~12 s, with fewer and
        smaller sizes."""
        return self._sync(self._request, "benchmark_hardware", asynchronous=asynchronous)


def _check_n(n: Any) -> None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"n must be a number of log lines or None, got {n!r}")


async def save_task_stream(records: list[dict[str, Any]], filename: str) -> None:
    """Write ``records`` as a standalone HTML chart (``get_task_stream``'s
    ``plot="save"``)."""
    import asyncio

    from shoal.diagnostics import html
    from shoal.scheduler.records import key_prefix

    await asyncio.to_thread(write_text, filename, html.task_stream(records, key_prefix=key_prefix))
