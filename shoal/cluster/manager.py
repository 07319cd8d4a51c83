"""What dask's ``Cluster`` base class gives every cluster object, for
``LocalCluster``: ``scheduler_info``, ``wait_for_workers``, ``get_client``,
``scale(n, memory=, cores=)``, the text and HTML reprs, and
``cluster.scheduler`` as a proxy when the scheduler is another process.

How it asks the scheduler: with the scheduler in this process
(``processes=False``) it calls the scheduler's request handlers directly;
otherwise through a small client of its own (made on first use, closed with
the cluster).  A synchronous cluster waits on the shared event loop thread;
an asynchronous one returns awaitables, as in dask.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from shoal.units import format_bytes, parse_bytes, parse_timedelta


class ClusterManager:
    """A mixin of ``LocalCluster`` and ``SpecCluster`` (which set the attributes used here:
    ``processes``, ``asynchronous``, ``status``, ``scheduler_address``,
    ``_scheduler``, ``_runner``, ``n_workers``, ``threads_per_worker``,
    ``memory_limit``, ``name``, ``dashboard_link``, ``_scale_to``,
    ``_scale_to_async``)."""

    processes: bool
    status: str
    n_workers: int
    threads_per_worker: int
    memory_limit: int
    _scheduler: Any
    _runner: Any
    #: the cluster's name
    name: str = ""
    #: whether its methods return awaitables
    asynchronous: bool = False
    scheduler_address: str = ""
    #: where the cluster's dashboard is (None without one)
    dashboard_link: str | None = None

    #: credentials for the cluster's own connection to its scheduler
    security: Any = None

    def _init_manager(self) -> None:
        self._manager_client: Any = None
        self._info: dict[str, Any] = {"workers": {}}
        self._loop: Any = None  # the caller's loop, for an asynchronous cluster
        self._adaptive: Any = None
        self._adaptive_options: dict[str, Any] = {}

    @property
    def loop(self) -> Any:
        """The event loop the cluster's coroutines run on (the shared loop
        thread's, or the caller's for an asynchronous cluster); None if none yet."""
        if self._runner is not None:
            return self._runner.loop
        return self._loop

    @property
    def called_from_running_loop(self) -> bool:
        """Whether the caller runs on the cluster's event loop."""
        import asyncio

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop = self.loop
        return running is loop if loop is not None else self.asynchronous

    def sync(self, func: Any, *args: Any, asynchronous: bool | None = None,
             callback_timeout: float | str | None = None, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` (a coroutine function) on the
        cluster's loop: an awaitable when asynchronous, else its result (at
        most ``callback_timeout``)."""
        import asyncio

        timeout = None if callback_timeout is None else parse_timedelta(callback_timeout)

        async def call() -> Any:
            result = func(*args, **kwargs)
            if hasattr(result, "__await__"):
                result = await asyncio.wait_for(result, timeout) if timeout else await result
            return result

        if self.asynchronous if asynchronous is None else asynchronous:
            return call()
        return self._acquire_runner().run_sync(call)

    @classmethod
    def from_name(cls, name: str) -> Any:
        """As dask's: a local cluster cannot be found again by name."""
        raise NotImplementedError(f"{cls.__name__}.from_name({name!r}): a local cluster cannot be "
                                  "found by name (dask's cannot either)")

    def start_worker(self, *args: Any, **kwargs: Any) -> Any:
        """Removed from dask's LocalCluster: use ``scale``."""
        raise NotImplementedError("cluster.start_worker was removed (as in dask): use cluster.scale(n)")

    @property
    def plan(self) -> set[str]:
        """The names of the workers this cluster is running or starting."""
        return set(self.workers)  # type: ignore[attr-defined]

    @property
    def requested(self) -> set[str]:
        return set(self.workers)  # type: ignore[attr-defined]

    @property
    def observed(self) -> set[str]:
        """The names of the workers the scheduler knows (on the cluster's
        event loop: as of the last ``scheduler_info`` refresh)."""
        return {str(w.get("name")) for w in self.scheduler_info.get("workers", {}).values()}

    # ------------------------------------------------------------------ plumbing

    def _acquire_runner(self) -> Any:
        if self._runner is None:
            from shoal.client.loop import get_loop_runner

            runner = get_loop_runner()
            runner.acquire()
            self._runner = runner
        return self._runner

    def _release_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.release()

    def _sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` (a coroutine function): an awaitable for an
        asynchronous cluster, else its result."""
        if self.asynchronous:
            return fn(*args, **kwargs)
        return self._acquire_runner().run_sync(fn, *args, **kwargs)

    async def _ask(self, method: str, **args: Any) -> Any:
        """The scheduler's answer to the request ``method``."""
        if self.status not in ("running", "created"):
            raise RuntimeError(f"{type(self).__name__} {self.name!r} is {self.status}")
        if not self.processes and self._scheduler is not None:
            return await self._scheduler.handlers[method](f"{self.name}-manager", **args)
        client = self._manager_client
        if client is None:
            from shoal.client.client import Client

            extra = {} if self.security is None else {"security": self.security}
            client = Client(self.scheduler_address, asynchronous=True, set_as_default=False,
                            name=f"{self.name}-manager", **extra)
            await client
            self._manager_client = client
        return await client._request(method, **args)

    async def _close_manager(self) -> None:
        client, self._manager_client = self._manager_client, None
        if client is not None:
            await client.close()

    def _close_manager_sync(self) -> None:
        if self._manager_client is not None and self._runner is not None:
            self._runner.run_sync(self._close_manager)

    # ------------------------------------------------------------------ dask's members

    async def _refresh_info(self) -> dict[str, Any]:
        self._info = await self._ask("scheduler_info", n_workers=-1)
        if self.dashboard_link is None and "dashboard" in self._info.get("services", {}):
            # a scheduler serving its own dashboard (SpecCluster, SubprocessCluster...)
            self.dashboard_link = await self._ask("dashboard_link")
        return self._info

    @property
    def scheduler_info(self) -> dict[str, Any]:
        """The scheduler's description of itself and every worker (as
        ``client.scheduler_info()``).  Synchronous: asked now; asynchronous:
        as of the last start, ``scale`` or ``wait_for_workers``."""
        if self.asynchronous or self.status != "running" or self.called_from_running_loop:
            return self._info
        return self._sync(self._refresh_info)  # type: ignore[no-any-return]

    def wait_for_workers(self, n_workers: int, timeout: float | str | None = None) -> Any:
        """Until at least ``n_workers`` workers are connected; ``TimeoutError``
        after ``timeout`` (seconds, or "30s")."""
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        seconds = None if timeout is None else parse_timedelta(timeout)

        async def wait() -> None:
            await self._ask("wait_for_workers", n=n_workers, timeout=seconds)
            await self._refresh_info()

        return self._sync(wait)

    def get_client(self) -> Any:
        """The current client if it is connected to this cluster, else a new one."""
        from shoal.client.client import Client

        try:
            current = Client.current()
        except ValueError:
            current = None
        if current is not None and current.cluster is self:
            return current
        return Client(self, asynchronous=self.asynchronous)

    def _threads_per_worker(self) -> int:
        """Threads of each new worker (for ``cores=`` in scale and adapt)."""
        return self.threads_per_worker

    def _memory_per_worker(self) -> int:
        """The memory limit of each new worker (for ``memory=``)."""
        if not self.memory_limit:
            raise ValueError("scaling by memory needs workers with a memory limit")
        return self.memory_limit

    def _workers_for(self, n: int, memory: Any, cores: int | None) -> int:
        """``n``, or enough workers for ``memory`` or ``cores``, whichever is most."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"scale() needs a number of workers >= 0, got {n!r}")
        if memory is not None:
            n = max(n, math.ceil(parse_bytes(memory) / self._memory_per_worker()))
        if cores is not None:
            n = max(n, math.ceil(cores / self._threads_per_worker()))
        return n

    def scale(self, n: int = 0, memory: Any = None, cores: int | None = None) -> Any:
        """Run ``n`` workers, or enough for ``memory`` (a size, with each
        worker's memory limit) or ``cores`` threads, whichever is most.  New
        workers have joined when it returns (shoal waits; dask does not);
        workers that go are retired first (their results copied to workers
        that stay)."""
        n = self._workers_for(n, memory, cores)
        if self.asynchronous:
            async def scale_async() -> None:
                await self._scale_to_async(n)  # type: ignore[attr-defined]
                await self._refresh_info()

            return scale_async()
        self._scale_to(n)  # type: ignore[attr-defined]
        return None

    scale_up = scale  # dask keeps this name for backwards compatibility

    async def _scale_async(self, n: int) -> None:
        """Scale to ``n`` workers, on the cluster's loop (what ``Adaptive`` calls)."""
        await self._scale_to_async(n)  # type: ignore[attr-defined]
        await self._refresh_info()

    # ------------------------------------------------------------------ adaptive

    def adapt(self, Adaptive: Any = None, minimum: float = 0, maximum: float = math.inf,
              minimum_cores: int | None = None, maximum_cores: int | None = None,
              minimum_memory: str | None = None, maximum_memory: str | None = None,
              **kwargs: Any) -> Any:
        """Scale with the work: more workers while tasks wait, fewer when
        they idle (retired gracefully: their results move first), never
        below ``minimum`` nor above ``maximum``.  ``minimum_cores``,
        ``maximum_cores``, ``minimum_memory``, ``maximum_memory``: bounds in
        threads or memory, turned into workers.  Other keywords
        (``interval``, ``wait_count``, ``target_duration``) are
        ``shoal.Adaptive``'s; a second call replaces the first, keeping its
        keywords unless given again.  Returns the ``Adaptive``."""
        if Adaptive is None:
            from shoal.deploy.adaptive import Adaptive
        if minimum_cores is not None:
            minimum = max(minimum or 0, math.ceil(minimum_cores / self._threads_per_worker()))
        if minimum_memory is not None:
            minimum = max(minimum or 0,
                          math.ceil(parse_bytes(minimum_memory) / self._memory_per_worker()))
        if maximum_cores is not None:
            maximum = min(maximum, math.floor(maximum_cores / self._threads_per_worker()))
        if maximum_memory is not None:
            maximum = min(maximum,
                          math.floor(parse_bytes(maximum_memory) / self._memory_per_worker()))
        if self.status in ("closing", "closed"):
            raise RuntimeError(f"{type(self).__name__} {self.name!r} is {self.status}")
        self._stop_adaptive("replaced by a new cluster.adapt()")
        if not self.asynchronous:
            self._acquire_runner()
        options = {**self._adaptive_options, **kwargs, "minimum": minimum, "maximum": maximum}
        self._adaptive = Adaptive(self, **options)
        self._adaptive_options = options  # kept for the next adapt(), once they proved good
        return self._adaptive

    def _stop_adaptive(self, reason: str) -> None:
        if self._adaptive is not None:
            self._adaptive.stop(reason=reason)

    async def _end_adaptive(self) -> None:
        """Stop adapting and wait for a round under way (before closing)."""
        adaptive = self._adaptive
        if adaptive is not None:
            adaptive.stop(reason="the cluster is closing")
            if hasattr(adaptive, "_finished"):
                await adaptive._finished()

    def _end_adaptive_sync(self) -> None:
        if self._adaptive is not None:
            self._adaptive.stop(reason="the cluster is closing")
            if self._runner is not None and hasattr(self._adaptive, "_finished"):
                self._runner.run_sync(self._adaptive._finished)

    # ------------------------------------------------------------------ reprs

    def _sizes(self) -> tuple[int, int, int]:
        workers = self.n_workers
        return workers, workers * self.threads_per_worker, workers * self.memory_limit

    def __repr__(self) -> str:
        workers, threads, memory = self._sizes()
        text = (f"{type(self).__name__}({self.name}, {self.scheduler_address!r}, "
                f"workers={workers}, threads={threads}")
        if memory:
            text += f", memory={format_bytes(memory)}"
        if self.dashboard_link:
            text += f", dashboard={self.dashboard_link}"
        return text + ")"

    def _repr_html_(self) -> str:
        """dask's layout: the cluster, then (collapsed) its scheduler and workers."""
        from shoal.widgets.reprs import cluster_html

        try:
            info = self.scheduler_info if self.status == "running" else self._info
        except Exception:  # a repr shows what it can
            info = self._info
        return cluster_html(type(self).__name__, self.name, self.dashboard_link, info,
                            str(self.status), self.processes)


class SchedulerProxy:
    """``cluster.scheduler`` when the scheduler is another process: its
    ``address`` and ``id``, and ``workers`` (address -> a record with
    ``name``, ``pid``, ``nthreads``, ``memory_limit``, ``host``,
    ``resources``, ``status``), asked of the scheduler each time (an
    asynchronous cluster: as of its last ``scheduler_info`` refresh).
    Enough for what notebooks do with it, such as picking worker processes
    to kill in a resilience demo."""

    def __init__(self, cluster: ClusterManager) -> None:
        self._cluster = cluster

    @property
    def address(self) -> str:
        return self._cluster.scheduler_address

    @property
    def id(self) -> str | None:
        return self._cluster.scheduler_info.get("id")

    @property
    def workers(self) -> dict[str, SimpleNamespace]:
        info = self._cluster.scheduler_info.get("workers", {})
        return {address: SimpleNamespace(address=address, **{
            k: w.get(k) for k in ("name", "pid", "nthreads", "memory_limit", "host", "resources",
                                  "status", "local_directory")}) for address, w in info.items()}

    def __repr__(self) -> str:
        return f"<Scheduler (process) {self.address!r}>"
