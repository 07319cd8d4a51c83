"""What progress bars count: for a client's keys, the tasks they need and
which of those have finished since it last asked.

A scheduler extension (see ``server.py``).  ``progress_start`` takes the
keys a ``progress(...)`` call was given and walks their dependencies the
way dask's progress does (``dependent_keys``):

* ``complete=True``: every task the keys depend on is counted, finished or
  not; the ones already in memory count as done.
* ``complete=False``: only work not done yet: the walk stops at tasks in
  memory (and at erred ones), so the bar starts at zero.

It then watches transitions (as a scheduler plugin: after each batch the
scheduler handled, from the state machine's log) and remembers which
counted tasks reached memory; ``progress_poll`` hands those over and says
whether the watch is over: every counted task done ("finished"), or one of
them erred or was forgotten before it finished ("error", as dask stops).
Keys go back as they are; grouping them into bars is the client's business
(a ``group_by`` callable is user code, which the scheduler never runs).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.scheduler.records import TaskRecord
    from shoal.scheduler.server import SchedulerServer

#: the name under which the watcher listens to transitions
PLUGIN_NAME = "shoal-progress"


class _Watch:
    __slots__ = ("all_keys", "client_id", "error", "newly_done", "remaining", "status")

    def __init__(self, client_id: str, all_keys: set[str], remaining: set[str]) -> None:
        self.client_id = client_id
        self.all_keys = all_keys
        self.remaining = remaining
        self.newly_done: list[str] = []
        self.status = "running" if remaining else "finished"
        self.error: dict[str, str] | None = None


def dependent_keys(roots: list[TaskRecord], complete: bool) -> tuple[set[str], set[str]]:
    """The keys ``roots`` need (themselves included) and the erred ones
    among them; with ``complete=False`` the walk stops at tasks in memory
    and at erred ones."""
    out: set[str] = set()
    errors: set[str] = set()
    stack = list(roots)
    while stack:
        ts = stack.pop()
        if ts.key in out:
            continue
        if not complete and ts.who_has:
            continue
        if ts.exception is not None:
            errors.add(ts.key)
            if not complete:
                continue
        out.add(ts.key)
        stack.extend(ts.deps)
    return out, errors


class ProgressWatches:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        self.watches: dict[int, _Watch] = {}
        self._ids = itertools.count(1)
        self._listening = False

    async def rpc_progress_start(self, client_id: str, keys: list[str],
                                 complete: bool = True) -> dict[str, Any]:
        """Start counting for ``keys``: the id to poll, every counted key,
        and those not done yet."""
        tasks = self.server.state.tasks
        roots = [tasks[k] for k in keys if k in tasks]
        all_keys, errors = dependent_keys(roots, complete)
        remaining = set(all_keys) if not complete else dependent_keys(roots, False)[0]
        # keys the scheduler no longer has count as done (nothing left to run)
        all_keys.update(keys)
        remaining |= errors & all_keys
        watch = _Watch(client_id, all_keys, remaining)
        wid = next(self._ids)
        if errors:
            self._erred(watch, sorted(errors)[0])
        if watch.status == "running":
            self.watches[wid] = watch
            await self._listen()
        else:
            self.watches[wid] = watch  # polled once, then dropped
        return {"id": wid, "all": sorted(all_keys), "remaining": sorted(remaining)}

    async def rpc_progress_poll(self, client_id: str, id: int) -> dict[str, Any]:
        """The counted keys done since the last poll, and the watch's status
        ("running", "finished" or "error", with the failed key)."""
        watch = self.watches.get(id)
        if watch is None or watch.client_id != client_id:
            raise KeyError(f"no progress watch {id} for this client")
        done, watch.newly_done = watch.newly_done, []
        if watch.status != "running":
            self._drop(id)
        return {"done": done, "status": watch.status, "error": watch.error}

    async def rpc_progress_stop(self, client_id: str, id: int) -> None:
        watch = self.watches.get(id)
        if watch is not None and watch.client_id == client_id:
            self._drop(id)

    def client_left(self, client_id: str) -> None:
        for wid in [w for w, watch in self.watches.items() if watch.client_id == client_id]:
            self._drop(wid)

    # -- hearing of transitions (as a scheduler plugin) ----------------------------

    async def _listen(self) -> None:
        if not self._listening:
            self._listening = True
            await self.server.plugins.add_plugin(_Listener(self), PLUGIN_NAME)

    def _drop(self, wid: int) -> None:
        self.watches.pop(wid, None)
        if self._listening and not any(w.status == "running" for w in self.watches.values()):
            self._listening = False
            self.server.plugins.plugins.pop(PLUGIN_NAME, None)

    def transition(self, key: str, finish: str) -> None:
        for watch in self.watches.values():
            if watch.status != "running" or key not in watch.all_keys:
                continue
            if finish == "memory" and key in watch.remaining:
                watch.remaining.discard(key)
                watch.newly_done.append(key)
                if not watch.remaining:
                    watch.status = "finished"
            elif finish == "erred":
                self._erred(watch, key)
            elif finish == "forgotten" and key in watch.remaining:
                watch.status = "error"
                watch.error = {"key": key, "text": "the task was cancelled or forgotten"}

    def _erred(self, watch: _Watch, key: str) -> None:
        ts = self.server.state.tasks.get(key)
        text = ts.exception[2] if ts is not None and ts.exception is not None else "failed"
        watch.status = "error"
        watch.error = {"key": key, "text": str(text)}


class _Listener:
    """The scheduler plugin through which the watches hear of transitions."""

    def __init__(self, watches: ProgressWatches) -> None:
        self.watches = watches

    def transition(self, key: str, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        self.watches.transition(key, finish)
