"""The worker's logic as a pure state machine.  No sockets, threads or clocks.

Messages from the scheduler and completion events from the server go in;
messages for the scheduler (``to_scheduler``) and instructions for the server
(``instructions``: run this task, fetch these keys from that peer, drop that
data) come out.  The values themselves live in the server's store; this class
only knows which keys are where.

Task states on a worker::

    fetch -> flight -> memory            a dependency copied from a peer
    waiting -> ready -> executing -> memory | (failed: forgotten)
                        executing -> cancelled   (freed while running; the
                                                  result is dropped on return)

A key in memory is *reported* when the scheduler knows this worker holds it
(computed here, fetched and announced, or scattered here); only the scheduler
frees reported keys.  Copies that came inline with a task are private and
dropped as soon as no local task needs them.

A *paused* worker (its memory past the pause threshold, see
``worker/memory.py``) starts no task and no fetch until it is resumed; what
runs goes on, and it still serves its data to others.
"""

from __future__ import annotations

import enum
import heapq
from typing import Any

import msgspec

from shoal.errors import InvariantViolation
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload


class WorkerTaskStatus(str, enum.Enum):
    FETCH = "fetch"
    FLIGHT = "flight"
    MISSING = "missing"
    WAITING = "waiting"
    READY = "ready"
    EXECUTING = "executing"
    CANCELLED = "cancelled"
    MEMORY = "memory"

    def __str__(self) -> str:
        return self.value


FETCH = WorkerTaskStatus.FETCH
FLIGHT = WorkerTaskStatus.FLIGHT
MISSING = WorkerTaskStatus.MISSING
WAITING = WorkerTaskStatus.WAITING
READY = WorkerTaskStatus.READY
EXECUTING = WorkerTaskStatus.EXECUTING
CANCELLED = WorkerTaskStatus.CANCELLED
MEMORY = WorkerTaskStatus.MEMORY


# -- instructions for the server ----------------------------------------------


class Execute(msgspec.Struct, gc=False):  # plain data: see protocol/messages.py
    key: str


class GatherDep(msgspec.Struct, gc=False):  # plain data: see protocol/messages.py
    worker: str
    keys: list[str]


class StoreInline(msgspec.Struct, gc=False):  # plain data: see protocol/messages.py
    key: str
    value: Payload


class DropData(msgspec.Struct, gc=False):  # plain data: see protocol/messages.py
    keys: list[str]


#: defaults (settings worker.prefetch.*): tasks shorter than this (on
#: average) are queued in the executor ahead...
PREFETCH_BELOW = 0.002
#: ...enough of them to cover this many seconds...
PREFETCH_WINDOW = 0.010
#: ...but at most this many per thread
PREFETCH_MAX = 128


class WorkerTask:
    __slots__ = (
        "actor",
        "args",
        "dependents",
        "deps",
        "func",
        "key",
        "n_missing",
        "nbytes",
        "priority",
        "push_to",  # client id the executor may send the result to directly
        "reported",
        "run_id",
        "state",
        "tried",
        "type_name",
        "who_has",
    )

    def __init__(self, key: str, state: WorkerTaskStatus) -> None:
        self.key = key
        self.state = state
        self.priority = 0
        self.func: bytes | None = None
        self.args: Payload | None = None
        self.actor = False
        self.deps: tuple[str, ...] = ()
        self.dependents: set[str] = set()
        self.n_missing = 0
        self.nbytes = 0
        self.type_name = ""
        self.who_has: list[str] = []
        self.tried: list[str] = []
        self.reported = False
        self.run_id = 0  # of the ExecuteTask asking for it here
        self.push_to = ""

    def __repr__(self) -> str:
        return f"<WorkerTask {self.key!r} {self.state.value}>"


class WorkerState:
    def __init__(
        self,
        address: str,
        nthreads: int,
        *,
        validate: bool = False,
        max_flight_bytes: int = 256 * 1024 * 1024,
        max_flight_peers: int = 8,
        prefetch_below: float = PREFETCH_BELOW,
        prefetch_window: float = PREFETCH_WINDOW,
        prefetch_max: int = PREFETCH_MAX,
    ) -> None:
        self.prefetch_below = prefetch_below
        self.prefetch_window = prefetch_window
        self.prefetch_max = prefetch_max
        self.address = address
        self.nthreads = nthreads
        self.validate = validate
        self.max_flight_bytes = max_flight_bytes
        self.max_flight_peers = max_flight_peers
        self.tasks: dict[str, WorkerTask] = {}
        self.ready: list[tuple[int, int, str]] = []
        self.executing: set[str] = set()
        self.in_flight: dict[str, tuple[list[str], int]] = {}  # peer -> (keys, bytes)
        self.flight_bytes = 0
        self.to_fetch: dict[str, None] = {}  # keys in FETCH, oldest first
        self.nbytes = 0  # bytes of values in memory
        self.mean_duration: float | None = None  # of recent tasks (seconds)
        self.paused = False  # memory past the pause threshold: start nothing new
        self.to_scheduler: list[Any] = []
        self.instructions: list[Any] = []
        self._seq = 0

    # ------------------------------------------------------------------ outbox

    def take(self) -> tuple[list[Any], list[Any]]:
        """``(messages for the scheduler, instructions for the server)``."""
        msgs, instr = self.to_scheduler, self.instructions
        self.to_scheduler, self.instructions = [], []
        return msgs, instr

    # ------------------------------------------------------------------ from the scheduler

    def handle_scheduler(self, msgs: list[Any]) -> list[Any]:
        """Apply a batch from the scheduler; return what this class does not handle."""
        unhandled = []
        for msg in msgs:
            t = type(msg)
            if t is m.ExecuteTask:
                self.execute_task(msg)
            elif t is m.FreeKeys:
                self.free_keys(msg.keys, msg.run_ids)
            elif t is m.StealRequest:
                self.steal_request(msg.key, msg.run_id)
            elif t is m.WorkersChanged:
                for address in msg.removed:
                    self.peer_gone(address)
            elif t is m.Heartbeat:
                pass  # the scheduler is alive: the server noted when
            else:
                unhandled.append(msg)
        self._advance()
        return unhandled

    def execute_task(self, msg: m.ExecuteTask) -> None:
        key = msg.key
        ts = self.tasks.get(key)
        if ts is not None:
            if ts.state is CANCELLED:
                # asked again while still running: the run goes on as the new
                # one, and the one taken back no longer holds the thread
                self._cancelled_run_ended(ts)
            ts.run_id = msg.run_id  # reports now answer this request
            if ts.state is MEMORY:
                ts.reported = True
                self.to_scheduler.append(
                    m.TaskFinished(key, ts.nbytes, ts.type_name, 0.0, run_id=msg.run_id)
                )
                return
            if ts.state is CANCELLED:
                ts.state = EXECUTING  # asked again while still running: keep the run
                return
            if ts.state in (WAITING, READY, EXECUTING):
                return  # a duplicate
            # a dependency being fetched is now to be computed here too:
            # keep fetching; computing it is the fallback if the fetch fails
            ts.func, ts.args, ts.priority, ts.actor = msg.func, msg.args, msg.priority, msg.actor
            ts.push_to = msg.push_to
            return
        ts = WorkerTask(key, WAITING)
        ts.run_id = msg.run_id
        ts.func, ts.args, ts.priority, ts.actor = msg.func, msg.args, msg.priority, msg.actor
        ts.push_to = msg.push_to
        self.tasks[key] = ts
        self._add_deps(ts, msg.deps)
        if ts.n_missing == 0:
            self._make_ready(ts)

    def _add_deps(self, ts: WorkerTask, deps: list[m.DependencyLocation]) -> None:
        keys = []
        for dep in deps:
            keys.append(dep.key)
            dts = self.tasks.get(dep.key)
            if dts is None:
                if dep.value is not None:
                    dts = WorkerTask(dep.key, MEMORY)
                    dts.nbytes = dep.nbytes
                    self.nbytes += dep.nbytes
                    self.tasks[dep.key] = dts
                    self.instructions.append(StoreInline(dep.key, dep.value))
                else:
                    dts = WorkerTask(dep.key, FETCH)
                    dts.nbytes = dep.nbytes
                    dts.who_has = [w for w in dep.workers if w != self.address]
                    self.tasks[dep.key] = dts
                    if dts.who_has:
                        self.to_fetch[dep.key] = None
                    else:
                        # the scheduler believes the only copy is here, but it
                        # is not (dropped meanwhile): say so rather than wait
                        # for a fetch that has nowhere to go
                        dts.state = MISSING
                        self.to_scheduler.append(m.DataMissing(dep.key, list(dep.workers)))
            elif dts.state in (FETCH, FLIGHT, MISSING):
                for w in dep.workers:
                    if w != self.address and w not in dts.who_has and w not in dts.tried:
                        dts.who_has.append(w)
                if dts.state is MISSING and dts.who_has:
                    dts.state = FETCH
                    self.to_fetch[dts.key] = None
            elif dts.state is CANCELLED:
                # still running here, though the scheduler took the run back
                # and has the result from elsewhere: wait for the run to end,
                # then fetch from those holders (see _refetch)
                for w in dep.workers:
                    if w != self.address and w not in dts.who_has:
                        dts.who_has.append(w)
            dts.dependents.add(ts.key)
            if dts.state is not MEMORY:
                ts.n_missing += 1
        ts.deps = tuple(keys)

    def _make_ready(self, ts: WorkerTask) -> None:
        ts.state = READY
        self._seq += 1
        heapq.heappush(self.ready, (ts.priority, self._seq, ts.key))

    def free_keys(self, keys: list[str], run_ids: list[int] | None = None) -> None:
        """Forget ``keys``.  ``run_ids`` pairs each with the run the scheduler
        takes back (0: none); each is answered with ``RunsEnded``, now if the
        run holds no thread, else when it ends (see ``_cancelled_run_ended``)."""
        ended = []
        for i, key in enumerate(keys):
            ts = self.tasks.get(key)
            run = run_ids[i] if run_ids else 0
            if run and (ts is None or ts.run_id != run or ts.state is not EXECUTING):
                ended.append(run)
            if ts is None:
                continue
            st = ts.state
            if st is EXECUTING:
                ts.state = CANCELLED
            elif st is CANCELLED:
                pass
            elif st is MEMORY:
                ts.reported = False
                if not ts.dependents:
                    self._forget(ts)
            elif st in (WAITING, READY) or not ts.dependents:
                self._forget(ts)
            else:
                ts.func = ts.args = None  # no longer to be computed here
        if ended:
            self.to_scheduler.append(m.RunsEnded(ended))

    def _cancelled_run_ended(self, ts: WorkerTask) -> None:
        """The run of ``ts`` that the scheduler took back has ended (or was
        skipped): its thread is free."""
        if ts.run_id:
            self.to_scheduler.append(m.RunsEnded([ts.run_id]))

    def steal_request(self, key: str, run_id: int) -> None:
        """The scheduler would give ``key`` to an idle worker: give it back
        if this run has not started (and is not also being fetched here)."""
        ts = self.tasks.get(key)
        stolen = (ts is not None and ts.run_id == run_id and ts.func is not None
                  and ts.state in (WAITING, READY))
        if stolen:
            assert ts is not None
            self._forget(ts)
        self.to_scheduler.append(m.StealResponse(key, run_id, stolen))

    def _forget(self, ts: WorkerTask) -> None:
        """Drop a task and its data; release the deps it held."""
        if ts.state is not MEMORY and ts.func is not None and ts.dependents:
            self._drop_pipelined(ts)
        del self.tasks[ts.key]
        if ts.state is MEMORY:
            self.nbytes -= ts.nbytes
            self.instructions.append(DropData([ts.key]))
        elif ts.state is FETCH:
            self.to_fetch.pop(ts.key, None)
        self._release_deps(ts)

    def _release_deps(self, ts: WorkerTask) -> None:
        for dk in ts.deps:
            dts = self.tasks.get(dk)
            if dts is None:
                continue
            dts.dependents.discard(ts.key)
            unneeded = not dts.dependents and not dts.reported and dts.state is not EXECUTING
            if unneeded and (dts.func is None or dts.state is MEMORY):
                self._forget(dts)
        ts.deps = ()

    # ------------------------------------------------------------------ from the server

    def execute_done(
        self, key: str, nbytes: int, type_name: str, duration: float, value: Payload | None
    ) -> None:
        ts = self.tasks.get(key)
        self.executing.discard(key)
        self._record_duration(duration)
        if ts is None:
            self._advance()
            return
        if ts.state is CANCELLED:
            self._cancelled_run_ended(ts)
            if ts.dependents:
                self._refetch(ts)
            else:
                ts.state = MEMORY  # so that _forget drops the data
                ts.nbytes = nbytes
                self.nbytes += nbytes
                self._forget(ts)
        else:
            ts.state = MEMORY
            ts.nbytes, ts.type_name = nbytes, type_name
            ts.reported = True
            self.nbytes += nbytes
            self.to_scheduler.append(m.TaskFinished(key, nbytes, type_name, duration, value, ts.run_id))
            self._release_deps(ts)
            self._dependents_gain(ts)
        self._advance()

    def execute_failed(
        self, key: str, exception: Payload, traceback: Payload, text: str, duration: float,
        reschedule: bool = False,
    ) -> None:
        """The task raised (``reschedule``: it raised ``Reschedule``, asking to
        run again rather than failing); the scheduler hears of it."""
        ts = self.tasks.get(key)
        self.executing.discard(key)
        self._record_duration(duration)
        if ts is not None:
            if ts.state is not CANCELLED:
                self.to_scheduler.append(m.TaskFailed(key, exception, traceback, text, duration,
                                                      ts.run_id, reschedule))
            else:
                self._cancelled_run_ended(ts)
            if ts.state is CANCELLED and ts.dependents:
                self._refetch(ts)
            else:
                ts.state = WAITING  # not memory: nothing to drop
                self._forget(ts)
        self._advance()

    def _drop_pipelined(self, ts: WorkerTask) -> None:
        """``ts`` failed here: tasks sent here ahead to run on its result
        (pipelined) cannot run; the scheduler takes them back, forget them."""
        for dk in list(ts.dependents):
            d = self.tasks.get(dk)
            if d is not None and d.state is WAITING:
                self._forget(d)  # and, through _forget, what waits on d

    def _refetch(self, ts: WorkerTask) -> None:
        """A run the scheduler took back (cancelled) has ended, but a task
        here has needed its key since, computed elsewhere (see ``_add_deps``).
        The server keeps no value from a cancelled run: fetch it instead."""
        ts.func = ts.args = None
        if ts.who_has:
            ts.state = FETCH
            self.to_fetch[ts.key] = None
        else:
            ts.state = MISSING
            self.to_scheduler.append(m.DataMissing(ts.key, []))

    def wants_data(self, key: str) -> bool:
        """Should data arriving for ``key`` be stored?  FETCH too: a key
        forgotten while in flight and needed again since waits in FETCH while
        the old request to that peer is still out; its reply will do."""
        ts = self.tasks.get(key)
        return ts is not None and (ts.state is FLIGHT or ts.state is FETCH)

    def gather_done(self, worker: str, received: dict[str, int], missing: list[str]) -> None:
        """The server got ``received`` (key -> nbytes) from ``worker`` and stored
        those for which ``wants_data`` was true."""
        requested, flight_bytes = self.in_flight.pop(worker, ([], 0))
        self.flight_bytes -= flight_bytes
        announce_keys, announce_nbytes = [], []
        for key, nbytes in received.items():
            ts = self.tasks.get(key)
            if ts is None or not (ts.state is FLIGHT or ts.state is FETCH):
                continue
            self.to_fetch.pop(key, None)  # FETCH: see wants_data
            ts.state = MEMORY
            ts.nbytes = nbytes
            self.nbytes += nbytes
            if not ts.dependents and ts.func is None:
                self._forget(ts)  # nobody needs it any more
                continue
            ts.reported = True
            announce_keys.append(key)
            announce_nbytes.append(nbytes)
            if ts.func is not None:  # we were also asked to compute it
                ts.func = ts.args = None
                self.to_scheduler.append(m.TaskFinished(key, nbytes, ts.type_name, 0.0, run_id=ts.run_id))
            self._dependents_gain(ts)
        if announce_keys:
            self.to_scheduler.append(m.ReplicasAdded(announce_keys, announce_nbytes))
        for key in missing:
            self._fetch_failed(key, worker)
        for key in requested:
            if key not in received and key not in missing:
                self._fetch_failed(key, worker)
        self._advance()

    def dependency_unusable(self, key: str, exception: Payload, traceback: Payload, text: str) -> None:
        """A peer holds ``key`` but cannot send it (it does not serialize): the
        tasks here that need it fail with that error."""
        ts = self.tasks.get(key)
        if ts is None:
            return
        if ts.state is FLIGHT or ts.state is FETCH:
            self.to_fetch.pop(key, None)
            ts.state = MISSING
        for dk in list(ts.dependents):
            d = self.tasks.get(dk)
            if d is not None and d.state is WAITING:
                self.to_scheduler.append(m.TaskFailed(dk, exception, traceback, text, 0.0, d.run_id))
                self._forget(d)
        self._advance()

    def gather_failed(self, worker: str) -> None:
        """Talking to ``worker`` failed altogether."""
        requested, flight_bytes = self.in_flight.pop(worker, ([], 0))
        self.flight_bytes -= flight_bytes
        for key in requested:
            self._fetch_failed(key, worker)
        self._advance()

    def peer_gone(self, worker: str) -> None:
        """``worker`` left the cluster: keys still to fetch are not fetched
        from it (those it alone held are reported missing).  Fetches in
        flight from it fail when the server drops its connection."""
        for key in [k for k, ts in self.tasks.items() if ts.state is FETCH and worker in ts.who_has]:
            self._fetch_failed(key, worker)

    def _fetch_failed(self, key: str, worker: str) -> None:
        ts = self.tasks.get(key)
        if ts is None or ts.state not in (FLIGHT, FETCH):
            return
        if worker in ts.who_has:
            ts.who_has.remove(worker)
        ts.tried.append(worker)
        if not ts.dependents and ts.func is None:
            del self.tasks[key]
            self.to_fetch.pop(key, None)
            return
        if ts.who_has:
            ts.state = FETCH
            self.to_fetch[key] = None
            return
        ts.state = MISSING
        self.to_fetch.pop(key, None)
        self.to_scheduler.append(m.DataMissing(key, ts.tried))
        ts.tried = []

    def data_put(self, sizes: dict[str, int], type_names: dict[str, str]) -> None:
        """A client stored these keys here (scatter)."""
        for key, nbytes in sizes.items():
            ts = self.tasks.get(key)
            if ts is not None and ts.state is MEMORY:
                self.nbytes -= ts.nbytes
            elif ts is None:
                ts = self.tasks[key] = WorkerTask(key, MEMORY)
            ts.state = MEMORY
            ts.nbytes = nbytes
            ts.type_name = type_names.get(key, "")
            ts.reported = True
            self.nbytes += nbytes
            self._dependents_gain(ts)
        self._advance()

    def accepts_copy(self, key: str) -> bool:
        """May a copy of ``key`` fetched at the scheduler's request
        (``rebalance``, ``replicate``, ``retire_workers``) be kept here?  Not
        while it is computed or fetched here for a task: that brings it."""
        ts = self.tasks.get(key)
        return ts is None or ts.state is MEMORY

    def copies_received(self, sizes: dict[str, int], type_names: dict[str, str]) -> list[str]:
        """Copies of these keys came from peers at the scheduler's request:
        keep those still acceptable (the server stores the values of keys
        that were not here) and announce them (``ReplicasAdded``).  Returns
        the keys kept."""
        kept, kept_nbytes = [], []
        for key, nbytes in sizes.items():
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = WorkerTask(key, MEMORY)
                ts.nbytes = nbytes
                ts.type_name = type_names.get(key, "")
                self.nbytes += nbytes
            elif ts.state is not MEMORY:
                continue
            ts.reported = True
            kept.append(key)
            kept_nbytes.append(ts.nbytes)
        if kept:
            self.to_scheduler.append(m.ReplicasAdded(kept, kept_nbytes))
        self._advance()
        return kept

    # ------------------------------------------------------------------ progress

    def _dependents_gain(self, ts: WorkerTask) -> None:
        for dk in ts.dependents:
            d = self.tasks.get(dk)
            if d is not None and d.state is WAITING:
                d.n_missing -= 1
                if d.n_missing == 0:
                    self._make_ready(d)

    def set_paused(self, paused: bool) -> None:
        """Pause (start no task, no fetch) or resume."""
        self.paused = paused
        self._advance()

    def _advance(self) -> None:
        """Start what can start: tasks on free threads, fetches on free peers
        (nothing while paused)."""
        if self.paused:
            if self.validate:
                self.check_invariants()
            return
        ready = self.ready
        limit = self.execution_slots()
        while ready and len(self.executing) < limit:
            _, _, key = heapq.heappop(ready)
            ts = self.tasks.get(key)
            if ts is None or ts.state is not READY:
                continue
            ts.state = EXECUTING
            self.executing.add(key)
            self.instructions.append(Execute(key))
        if self.to_fetch:
            self._start_fetches()
        if self.validate:
            self.check_invariants()

    def execution_slots(self) -> int:
        """Tasks handed to the executor at once: one per thread, plus, when
        tasks are tiny, a queue of them, so a thread runs the next one as soon
        as one ends instead of waiting a round trip through the event loop
        for each (that round trip costs more than a millisecond-long task)."""
        mean = self.mean_duration
        if mean is None or mean >= self.prefetch_below:
            return self.nthreads
        extra = min(self.prefetch_max, int(self.prefetch_window / max(mean, 1e-6)))
        return self.nthreads * (1 + extra)

    def _record_duration(self, duration: float) -> None:
        mean = self.mean_duration
        self.mean_duration = duration if mean is None else 0.8 * mean + 0.2 * duration

    def execute_skipped(self, key: str) -> None:
        """The executor did not run ``key``: it was freed while queued there."""
        ts = self.tasks.get(key)
        self.executing.discard(key)
        if ts is not None and ts.state is CANCELLED:
            self._cancelled_run_ended(ts)
            if ts.dependents:
                self._refetch(ts)
            else:
                ts.state = WAITING  # nothing to drop
                self._forget(ts)
        self._advance()

    def _start_fetches(self) -> None:
        by_peer: dict[str, tuple[list[str], int]] = {}
        flight_bytes = self.flight_bytes
        for key in list(self.to_fetch):
            if flight_bytes >= self.max_flight_bytes:
                break
            ts = self.tasks[key]
            peer = next((w for w in ts.who_has if w not in self.in_flight), None)
            if peer is None:
                continue
            if peer not in by_peer and len(self.in_flight) + len(by_peer) >= self.max_flight_peers:
                continue
            keys, nbytes = by_peer.get(peer, ([], 0))
            keys.append(key)
            by_peer[peer] = (keys, nbytes + ts.nbytes)
            del self.to_fetch[key]
            ts.state = FLIGHT
            flight_bytes += ts.nbytes
        for peer, (keys, nbytes) in by_peer.items():
            self.in_flight[peer] = (keys, nbytes)
            self.flight_bytes += nbytes
            self.instructions.append(GatherDep(peer, keys))

    # ------------------------------------------------------------------ checks

    def check_invariants(self) -> None:
        nbytes = 0
        for key, ts in self.tasks.items():
            if ts.key != key:
                raise InvariantViolation(f"worker task {ts.key!r} stored under {key!r}")
            if ts.state is MEMORY:
                nbytes += ts.nbytes
            if ts.state is EXECUTING and key not in self.executing:
                raise InvariantViolation(f"{key!r} executing but not in the executing set")
            if ts.state is WAITING:
                missing = sum(
                    1 for dk in ts.deps if dk not in self.tasks or self.tasks[dk].state is not MEMORY
                )
                if missing != ts.n_missing or missing == 0:
                    raise InvariantViolation(f"{key!r} waiting: n_missing={ts.n_missing}, missing={missing}")
            for dk in ts.deps:
                if ts.state in (WAITING, READY, EXECUTING) and (
                    dk not in self.tasks or key not in self.tasks[dk].dependents
                ):
                    raise InvariantViolation(f"{key!r} lost track of its dependency {dk!r}")
            if ts.state is FETCH and key not in self.to_fetch:
                raise InvariantViolation(f"{key!r} in fetch but not queued for fetching")
        if nbytes != self.nbytes:
            raise InvariantViolation(f"worker nbytes {self.nbytes} != {nbytes}")
        for key in self.executing:
            st = self.tasks[key].state if key in self.tasks else None
            if st not in (EXECUTING, CANCELLED):
                raise InvariantViolation(f"{key!r} in the executing set while {st}")
