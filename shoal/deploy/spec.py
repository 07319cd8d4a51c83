"""``SpecCluster``: a cluster described by specifications, the base of every
cluster that gets its workers from somewhere else (subprocesses, ssh, a
batch system), as dask's ``distributed.deploy.SpecCluster``.

    scheduler = {"cls": Scheduler, "options": {"port": 0}}
    worker = {"cls": Nanny, "options": {"nthreads": 2}}
    cluster = SpecCluster(scheduler=scheduler, worker=worker, workers={0: worker})
    cluster.scale(4)        # four workers of the ``worker`` kind
    cluster.adapt(maximum=10)

``worker_spec`` says which workers should exist (name -> ``{"cls",
"options"}``, plus ``"group"``: name suffixes when one entry starts several
workers, as a batch job running ``--nworkers 3`` does); ``workers`` holds
the objects made from it.  ``_correct_state`` brings the second in line with
the first: it makes and starts what is missing (``cls(scheduler_address,
name=..., **options)``, then ``await``) and, for what is no longer
specified, retires the workers through the scheduler (their results move to
workers that stay) and then closes the objects.

A worker or scheduler ``cls`` is anything awaitable with ``close()``:
shoal's ``Scheduler``, ``Worker``, ``Nanny``, or a ``ProcessInterface``
standing for a process elsewhere (a subprocess, a remote process, a job).

A synchronous cluster runs its coroutines on the shared event loop thread
and waits; an asynchronous one is awaited (``await SpecCluster(...,
asynchronous=True)`` or ``async with``).  ``scale`` waits until the new
workers' objects have started: for ``Nanny`` that is once the worker joined,
for a batch job once it was submitted (dask does not wait at all).
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import logging
import math
import weakref
from collections.abc import Generator
from typing import Any

from shoal.cluster.manager import ClusterManager
from shoal.deploy.keywords import refuse
from shoal.units import parse_timedelta

logger = logging.getLogger("shoal.deploy")


class ProcessInterface:
    """A scheduler or worker that lives elsewhere, for ``SpecCluster``
    (dask's interface): ``start()`` asks for it (a worker need not have
    joined when it returns; a scheduler's ``address`` must be known),
    ``close()`` ends it without ceremony (the cluster retired it first),
    ``await`` starts it once, ``finished()`` waits until it is closed."""

    def __init__(self, scheduler: Any = None, name: Any = None) -> None:
        self.address: str | None = getattr(self, "address", None)
        self.external_address: str | None = None
        self.lock = asyncio.Lock()
        self.status = "created"
        self._event_finished = asyncio.Event()

    def __await__(self) -> Generator[Any, None, Any]:
        async def start_once() -> Any:
            async with self.lock:
                if self.status == "created":
                    await self.start()
            return self

        return start_once().__await__()

    async def start(self) -> None:
        self.status = "running"

    async def close(self) -> None:
        self.status = "closed"
        self._event_finished.set()

    async def finished(self) -> None:
        await self._event_finished.wait()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: status={self.status}>"

    async def __aenter__(self) -> Any:
        await self
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def contact_address(server: Any) -> str:
    """The address to give workers and clients for ``server``: its
    ``external_address``, a shoal ``Scheduler``'s ``contact()`` (a wildcard
    host replaced by this machine's address), or its ``address``."""
    external = getattr(server, "external_address", None)
    if external:
        return str(external)
    contact = getattr(server, "contact", None)
    if callable(contact):
        return str(contact())
    return str(server.address)


_instances: weakref.WeakSet[SpecCluster] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Close synchronous clusters left open (dask's ``shutdown_on_close``):
    a batch job or a remote process must not outlive the program."""
    from shoal import config

    for cluster in list(_instances):
        if cluster.shutdown_on_close and not cluster.asynchronous and cluster.status == "running":
            try:
                cluster.close(timeout=config.duration("admin.close-at-exit-timeout"))
            except Exception:
                logger.warning("could not close %r at exit", cluster, exc_info=True)


class SpecCluster(ClusterManager):
    """A cluster made from specifications (dask's keywords; see the module
    docstring).  workers: the initial ``{name: spec}``; scheduler: the
    scheduler's spec (default: a shoal ``Scheduler`` in this process);
    worker: the spec of the workers ``scale`` adds; shutdown_on_close:
    close it when the program exits; shutdown_scheduler: close the
    scheduler with the cluster."""

    def __init__(
        self,
        workers: dict[Any, dict[str, Any]] | None = None,
        scheduler: dict[str, Any] | None = None,
        worker: dict[str, Any] | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        security: Any = None,
        silence_logs: Any = False,
        name: str | None = None,
        shutdown_on_close: bool = True,
        scheduler_sync_interval: float | str = 1,
        shutdown_scheduler: bool = True,
    ) -> None:
        refuse(type(self).__name__, loop=loop)
        for what, spec in (("scheduler", scheduler), ("worker", worker)):
            if spec is not None and (not isinstance(spec, dict) or "cls" not in spec):
                raise TypeError(f"{what}= must be a spec: {{'cls': ..., 'options': {{...}}}}, "
                                f"got {spec!r}")
        for key, spec in (workers or {}).items():
            if not isinstance(spec, dict) or "cls" not in spec:
                raise TypeError(f"workers[{key!r}] must be a spec: {{'cls': ..., 'options': "
                                f"{{...}}}}, got {spec!r}")
        self.scheduler_spec = copy.copy(scheduler)
        self.worker_spec: dict[Any, dict[str, Any]] = dict(workers or {})
        self.new_spec = copy.copy(worker)
        self.scheduler: Any = None
        self.workers: dict[Any, Any] = {}
        self.security = security
        self.silence_logs = silence_logs
        self.name = name or type(self).__name__
        self.shutdown_on_close = shutdown_on_close
        self.shutdown_scheduler = shutdown_scheduler
        self.scheduler_sync_interval = parse_timedelta(scheduler_sync_interval)
        self.asynchronous = asynchronous
        self.status = "created"
        self.processes = True
        self.scheduler_address = ""
        self._scheduler = None  # ClusterManager's in-process scheduler: see _ask
        self._runner = None
        self._i = 0
        self._groups: dict[Any, list[str] | None] = {}  # name -> suffixes, of started workers
        self._created: list[Any] = []  # every worker object made, closed at the end
        self._lock: asyncio.Lock | None = None
        self._correcting: asyncio.Task[None] | None = None
        self._old_level: int | None = None
        self._init_manager()
        _instances.add(self)
        if not asynchronous:
            self._acquire_runner()
            try:
                self._runner.run_sync(self._start_and_correct)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ start

    def __await__(self) -> Generator[Any, None, SpecCluster]:
        async def start() -> SpecCluster:
            await self._start_and_correct()
            return self

        return start().__await__()

    async def _start_and_correct(self) -> None:
        if self.status == "created":
            await self._start()
        await self._correct_state()

    async def _start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self.status = "starting"
        self._silence()
        if self.scheduler_spec is None:
            from shoal.deploy.scheduler import Scheduler

            self.scheduler_spec = {"cls": Scheduler, "options": {}}
        try:
            cls = _class(self.scheduler_spec["cls"])
            self.scheduler = await cls(**self.scheduler_spec.get("options", {}))
            self.scheduler_address = contact_address(self.scheduler)
        except Exception as e:
            self.status = "failed"
            raise RuntimeError(f"{type(self).__name__} failed to start its scheduler: {e}") from e
        self.status = "running"

    def _silence(self) -> None:
        """``silence_logs``: shoal's loggers in this process at that level
        until the cluster closes (the in-process scheduler's among them)."""
        if self.silence_logs and self._old_level is None:
            from shoal.deploy.child_args import log_level_name

            shoal_logger = logging.getLogger("shoal")
            self._old_level = shoal_logger.level
            shoal_logger.setLevel(log_level_name(self.silence_logs))

    def _unsilence(self) -> None:
        if self._old_level is not None:
            logging.getLogger("shoal").setLevel(self._old_level)
            self._old_level = None

    # ------------------------------------------------------------------ the spec and the state

    def _correct_state(self) -> asyncio.Task[None]:
        """Bring ``workers`` in line with ``worker_spec`` (one run at a
        time; calls while one waits share it)."""
        if self._correcting is None or self._correcting.done():
            self._correcting = asyncio.ensure_future(self._correct_state_internal())
        return self._correcting

    async def _correct_state_internal(self) -> None:
        assert self._lock is not None
        async with self._lock:
            self._correcting = None
            to_close = [name for name in self.workers if name not in self.worker_spec]
            if to_close:
                if self.status == "running":
                    await self._retire([n for name in to_close for n in self._members(name)])
                await asyncio.gather(*(self.workers[name].close() for name in to_close))
                for name in to_close:
                    del self.workers[name]
                    self._groups.pop(name, None)
                self._created = [w for w in self._created if w.status != "closed"]
            to_open = [name for name in self.worker_spec if name not in self.workers]
            if not to_open or self.status != "running":
                return
            made = {}
            for name in to_open:
                spec = self.worker_spec[name]
                options = dict(spec.get("options", {}))
                options.setdefault("name", name)
                made[name] = _class(spec["cls"])(self.scheduler_address, **options)
                self._created.append(made[name])
                self._groups[name] = spec.get("group")
            results = await asyncio.gather(*(_start(w) for w in made.values()),
                                           return_exceptions=True)
            errors = []
            for (name, w), result in zip(made.items(), results):
                if isinstance(result, BaseException):
                    errors.append(result)
                    self.worker_spec.pop(name, None)  # not asked for again by every round
                    self._groups.pop(name, None)
                else:
                    self.workers[name] = w
            if errors:
                raise errors[0]
            await self._refresh_info()  # for the repr and ``observed``

    async def _retire(self, names: list[str]) -> None:
        """Retire workers gracefully before their objects are closed."""
        try:
            await self._ask("retire_workers", names=names, close_workers=True, remove=True)
        except Exception as e:
            logger.warning("could not retire workers %s gracefully: %s", names, e)

    def _members(self, name: Any) -> list[str]:
        """The worker names a spec entry stands for (its group's, if any)."""
        group = self._groups.get(name, self.worker_spec.get(name, {}).get("group"))
        return [f"{name}{suffix}" for suffix in group] if group else [str(name)]

    def _new_worker_name(self, worker_number: int) -> Any:
        """The name of the ``worker_number``-th worker ``scale`` adds."""
        return worker_number

    def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
        """``{name: spec}`` of the next worker ``scale`` would add."""
        if not self.new_spec:
            raise ValueError(f"{type(self).__name__} was given no worker= spec: it cannot scale")
        name = self._new_worker_name(self._i)
        while name in self.worker_spec or name in self.workers:
            self._i += 1
            name = self._new_worker_name(self._i)
        self._i += 1  # names are not reused: a retired worker's name stays its own
        return {name: self.new_spec}

    def _scale_spec(self, n: int) -> None:
        """Change ``worker_spec`` to ``n`` entries: drop entries none of whose
        workers joined first, then the newest; add ``new_worker_spec()``s."""
        if len(self.worker_spec) > n:
            observed = self.observed
            not_launched = [name for name in self.worker_spec
                            if not any(m in observed for m in self._members(name))]
            while len(self.worker_spec) > n and not_launched:
                del self.worker_spec[not_launched.pop()]
        while len(self.worker_spec) > n:
            self.worker_spec.popitem()
        if self.status not in ("closing", "closed"):
            while len(self.worker_spec) < n:
                self.worker_spec.update(self.new_worker_spec())

    async def _scale_async(self, n: int) -> None:
        """Scale to ``n`` workers: ``n`` spec entries, or fewer when each
        entry starts a group of workers (a job running several)."""
        spec = self.new_spec or next(iter(self.worker_spec.values()), None) or {}
        group = len(spec.get("group") or [None])
        await self._refresh_info()
        self._scale_spec(math.ceil(n / group))
        await self._correct_state()

    def scale(self, n: int = 0, memory: Any = None, cores: int | None = None) -> Any:
        """``n`` workers, or enough for ``memory`` or ``cores`` (each worker's
        ``memory_limit``/``nthreads`` in the ``worker`` spec), whichever is
        most.  Returns when the new workers' objects have started (an
        awaitable for an asynchronous cluster)."""
        n = self._workers_for(n, memory, cores)
        if self.status != "running":
            raise RuntimeError(f"{type(self).__name__} {self.name!r} is {self.status}")
        if self.asynchronous:
            return asyncio.ensure_future(self._scale_async(n))
        return self._sync(self._scale_async, n)

    scale_up = scale

    async def scale_down(self, workers: Any) -> None:
        """Remove these workers (names, or the names of a group's members)."""
        wanted = [workers] if isinstance(workers, (str, int)) else list(workers)
        by_member = {m: name for name in self.worker_spec for m in self._members(name)}
        for w in wanted:
            name = w if w in self.worker_spec else by_member.get(str(w))
            if name is not None:
                self.worker_spec.pop(name, None)
        await self._correct_state()

    def _options(self) -> dict[str, Any]:
        if not self.new_spec:
            raise ValueError(f"{type(self).__name__} was given no worker= spec")
        return dict(self.new_spec.get("options", {}))

    def _threads_per_worker(self) -> int:
        options = self._options()
        for key in ("nthreads", "ncores", "threads", "cores"):
            if options.get(key):
                return int(options[key])
        raise ValueError("scaling by cores needs nthreads in the worker spec's options")

    def _memory_per_worker(self) -> int:
        from shoal.units import parse_bytes

        options = self._options()
        for key in ("memory_limit", "memory"):
            if options.get(key) not in (None, "auto", 0):
                return parse_bytes(options[key])
        raise ValueError("scaling by memory needs memory_limit in the worker spec's options")

    @property
    def plan(self) -> set[str]:
        """The names of the workers the spec asks for."""
        return {m for name in self.worker_spec for m in self._members(name)}

    @property
    def requested(self) -> set[str]:
        """The names of the workers whose objects have started."""
        return {m for name in self.workers if name in self.worker_spec
                for m in self._members(name)}

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        return len(self.plan)

    # ------------------------------------------------------------------ asking the scheduler

    async def _ask(self, method: str, **args: Any) -> Any:
        handlers = getattr(self.scheduler, "handlers", None)
        if handlers is not None and method in handlers:  # a scheduler in this process
            return await handlers[method](f"{self.name}-manager", **args)
        return await super()._ask(method, **args)

    def _sizes(self) -> tuple[int, int, int]:
        workers = self._info.get("workers", {}).values()
        return (len(workers), sum(int(w.get("nthreads", 0)) for w in workers),
                sum(int(w.get("memory_limit") or 0) for w in workers))

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """As ``LocalCluster.get_logs``: ``{"Cluster", "Scheduler", address: lines}``."""
        from shoal.cluster.cluster_logs import get_logs

        return get_logs(self, scheduler, workers, cluster_manager=cluster)

    # ------------------------------------------------------------------ close

    def close(self, timeout: float | None = None) -> Any:
        """Close the workers (jobs cancelled, processes ended), then the scheduler."""
        if self.asynchronous:
            return self._close()
        if self.status != "closed" and self._runner is not None:
            try:
                self._runner.run_sync(self._close, _timeout=timeout or 60)
            finally:
                self._release_runner()
        self.status = "closed"
        return None

    async def _close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        started = self.status == "running"
        self.status = "closing"
        try:
            await self._end_adaptive()
            self.worker_spec.clear()
            if self._lock is not None:
                await self._correct_state()
            # anything made and not closed yet (one whose start failed): a job
            # submitted is a job cancelled
            await asyncio.gather(*(w.close() for w in self._created
                                   if getattr(w, "status", None) not in ("closed", "closing")),
                                 return_exceptions=True)
            await self._close_manager()
            if self.scheduler is not None and self.shutdown_scheduler:
                await self.scheduler.close()
            elif not started:
                logger.debug("%s closed before its scheduler started", self.name)
        finally:
            self._unsilence()
            self.status = "closed"

    def __enter__(self) -> SpecCluster:
        if self.asynchronous:
            raise TypeError(f"an asynchronous {type(self).__name__} is used with 'async with'")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> SpecCluster:
        try:
            return await self
        except BaseException:
            await self._close()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self._close()

    @classmethod
    def from_name(cls, name: str) -> Any:
        raise NotImplementedError(f"{cls.__name__}.from_name({name!r}): clusters cannot be "
                                  "found by name (dask's SpecCluster cannot either)")


async def _start(worker: Any) -> Any:
    return await worker


def _class(cls: Any) -> Any:
    """A class, or the class a dotted name (``"shoal.Nanny"``) names."""
    if not isinstance(cls, str):
        return cls
    import importlib

    module, _, attr = cls.rpartition(".")
    if not module:
        raise ValueError(f"a class name must be dotted (module.Class), got {cls!r}")
    return getattr(importlib.import_module(module), attr)
