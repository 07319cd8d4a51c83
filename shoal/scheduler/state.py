"""The scheduler's logic as a pure state machine.  No sockets, threads or clocks.

Rules:
1. Messages in, messages out.  ``handle_client`` and ``handle_worker`` take a
   batch of protocol messages from one peer (plus the time, passed in); the
   resulting messages wait in ``to_workers`` / ``to_clients`` until the server
   takes them with ``take_messages()``.  The same inputs always give the same
   outputs, which is what the simulation harness relies on.
2. A task's state changes only through ``transitions.TRANSITIONS``.
3. With ``validate=True`` every handled batch ends with a full invariant check.
4. User data is never unpickled here: arguments, results and exceptions are
   ``Payload`` objects passed through unopened.

Why messages rather than separate event/instruction classes (as dask's worker
state machine has): the wire structs already are typed, immutable facts, so a
second set of classes would double the code and cost a conversion per message
on the hot path, while giving the tests nothing they do not already have.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any

from shoal.errors import FutureLost, InvalidTransition, KilledWorker, SchedulerError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps
from shoal.scheduler import control_state, data_state, placement
from shoal.scheduler.placement import worker_slots
from shoal.scheduler.records import (
    ERRED,
    FORGOTTEN,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    ClientRecord,
    Restrictions,
    SchedulerTaskStatus,
    TaskRecord,
    WorkerRecord,
)
from shoal.scheduler.transitions import ROUTES, TRANSITIONS, Recs, by_priority, leave_worker

#: seconds assumed for a function never seen before
UNKNOWN_DURATION = 0.5
#: priorities: user priority first, then submission order
_PRIORITY_SCALE = 1 << 48
FIRE_AND_FORGET = "fire-and-forget"
#: a task in these states has not been handed to a worker (this run)
_NOT_STARTED = frozenset({RELEASED, WAITING, QUEUED, NO_WORKER})


class SchedulerState:
    def __init__(self, *, validate: bool = False, allowed_failures: int = 3, log_size: int = 20_000,
                 unknown_duration: float = UNKNOWN_DURATION):
        self.tasks: dict[str, TaskRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.clients: dict[str, ClientRecord] = {FIRE_AND_FORGET: ClientRecord(FIRE_AND_FORGET)}
        # clients that stand for something else (fire_and_forget, queues...)
        self.pseudo_clients: set[str] = {FIRE_AND_FORGET}
        self.functions: dict[bytes, bytes] = {}
        self.queued: list[tuple[int, int, TaskRecord]] = []  # heap; stale entries skipped
        self.unrunnable: set[TaskRecord] = set()
        # tasks submitted with dependencies the scheduler did not know (keys
        # released or cancelled meanwhile): they err until those keys are
        # known again, checked whenever they would run (see released_waiting)
        self.unknown_deps: dict[TaskRecord, list[str]] = {}
        # workers that lost a processing task while tasks were queued: they
        # get queued tasks when the transitions are done (see transitions())
        self.freed: dict[WorkerRecord, None] = {}
        self.durations: dict[str, float] = {}
        # stolen tasks -> the idle worker they go to (see work_stealing.py)
        self.steal_targets: dict[TaskRecord, WorkerRecord] = {}
        # client.set_metadata(): nested dicts; a task's entry goes with it (forget)
        self.task_metadata: dict[Any, Any] = {}
        self.to_workers: dict[str, list[Any]] = {}
        self.to_clients: dict[str, list[Any]] = {}
        # ReleaseKeys handled per client, not answered yet (see send_client):
        # the answer travels with the client's next news, not on its own
        self.release_acks: dict[str, int] = {}
        self.log: deque[tuple[str, Any, Any, str, float]] = deque(maxlen=log_size)
        self.validate = validate
        self.allowed_failures = allowed_failures
        self.unknown_duration = unknown_duration
        self.now = 0.0
        self.stimulus = ""
        self.transition_counter = 0
        self._seq = 0
        self._run_seq = 0
        self._last_deps: tuple[TaskRecord, ...] = ()
        self._running: list[WorkerRecord] | None = None

    # ------------------------------------------------------------------ outbox

    def send_worker(self, w: WorkerRecord, msg: Any) -> None:
        out = self.to_workers.get(w.address)
        if out is None:
            self.to_workers[w.address] = [msg]
        else:
            out.append(msg)

    def send_client(self, client_id: str, msg: Any) -> None:
        if client_id in self.pseudo_clients:
            return
        out = self.to_clients.get(client_id)
        if out is None:
            out = self.to_clients[client_id] = []
        if self.release_acks:
            acks = self.release_acks.pop(client_id, 0)
            if acks:  # ahead of any news about keys it may want again
                out.append(m.ReleaseHandled(acks))
        out.append(msg)

    def flush_release_acks(self) -> bool:
        """Answer the releases no news has carried an answer to yet (called
        now and then by the server, so that a quiet client learns too);
        whether there were any."""
        acks, self.release_acks = self.release_acks, {}
        for client_id, n in acks.items():
            if client_id in self.clients:
                self.to_clients.setdefault(client_id, []).append(m.ReleaseHandled(n))
        return bool(acks)

    def take_messages(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The messages produced since the last call, by destination."""
        w, c = self.to_workers, self.to_clients
        self.to_workers, self.to_clients = {}, {}
        return w, c

    # ------------------------------------------------------------------ the loop

    def transitions(self, recs: Recs) -> None:
        log_append = self.log.append
        stimulus, now = self.stimulus, self.now
        table = TRANSITIONS
        n = 0
        while recs:
            ts, finish = recs.popitem()
            start = ts.state
            if start is finish or start is FORGOTTEN:
                continue
            func = table.get((start, finish))
            if func is None:
                via = ROUTES.get((start, finish))
                if via is None:
                    raise InvalidTransition(ts.key, str(start), str(finish), self.story(ts.key))
                recs[ts] = finish  # after the intermediate step
                func = table[(start, via)]
            func(self, ts, recs)
            n += 1
            log_append((ts.key, start, ts.state, stimulus, now))
        self.transition_counter += n

    def fill_freed(self) -> None:
        """A slot freed by a release or a cancel goes to a queued task now:
        otherwise it would wait for that worker's next message, which may
        never come (nothing else running there).  Once per handled batch."""
        if self.freed:
            freed, self.freed = self.freed, {}
            for w in freed:
                if w.status == "running":
                    self.fill_worker(w)

    def story(self, *keys: str) -> list[tuple[str, str, str, str, float]]:
        """The transitions of these keys still in the log, oldest first:
        ``(key, start, finish, stimulus, time)``."""
        wanted = set(keys)
        return [(k, str(a), str(b), s, t) for k, a, b, s, t in self.log if k in wanted]

    # ------------------------------------------------------------------ used by transitions

    def running_workers(self) -> list[WorkerRecord]:
        running = self._running
        if running is None:
            running = self._running = [w for w in self.workers.values() if w.status == "running"]
        return running

    def expected_duration(self, prefix: str) -> float:
        return self.durations.get(prefix, self.unknown_duration)

    def assign(self, ts: TaskRecord, w: WorkerRecord) -> None:
        """Send ``ts`` to ``w`` to run."""
        est = self.expected_duration(ts.prefix)
        ts.state = PROCESSING
        ts.processing_on = w
        w.processing[ts] = est
        w.occupancy += est
        func = ts.func
        assert func is not None and ts.args is not None
        if func not in w.functions:
            w.functions.add(func)
            self.send_worker(w, m.DefineFunctions([m.FunctionDef(func, self.functions[func])]))
        deps = []
        for dep in ts.deps:
            holders = dep.who_has
            value = dep.value if w not in holders else None
            deps.append(m.DependencyLocation(dep.key, [h.address for h in holders], dep.nbytes, value))
        actor = ts.restrictions is not None and ts.restrictions.actor
        self._run_seq += 1
        ts.run_id = self._run_seq
        args = ts.args if isinstance(ts.args, Payload) else Payload(ts.args)
        push_to = self._push_target(ts, w) if len(w.processing) == 1 and ts.n_wanted == 1 else ""
        self.send_worker(w, m.ExecuteTask(ts.key, func, args, ts.priority, deps, actor, ts.run_id,
                                          push_to))

    def _push_target(self, ts: TaskRecord, w: WorkerRecord) -> str:
        """The client that may hear ``ts``'s result from ``w`` directly: the
        one client that wants it, when it is all ``w`` has to do (a waiting
        caller, most likely; a busy worker reports in batches instead)."""
        if ts.restrictions is not None and ts.restrictions.actor:
            return ""
        for c in self.clients.values():
            if ts in c.wants:
                return "" if c.client_id in self.pseudo_clients else c.client_id
        return ""

    def revoke(self, w: WorkerRecord, ts: TaskRecord) -> None:
        """Take back the run of ``ts`` on ``w`` (the task is still in state
        processing; the transition that follows moves it on) and tell ``w``
        to drop it.  Should ``w`` have finished just before, its report is
        already on its way; it carries that run's id, which is no longer
        current (``ts.run_id`` is reset here), so it is ignored.

        A running task cannot be stopped: until ``w`` answers ``RunsEnded``,
        the run counts as busy there (``w.stopping``), so that tasks go to
        idle threads rather than queue behind it.  Not counted: a seceded
        run (its thread was replaced), and a run expected to be shorter than
        a worker's backlog (``TARGET_BACKLOG``): it ends, or is skipped
        unstarted, before a task queued behind it would wait noticeably, and
        cancelling a big map of tiny tasks would otherwise make its workers
        look busy for no reason."""
        if w.status == "closed":
            return  # dead: it sends nothing more, and its removal moves its tasks on
        run = ts.run_id
        counted = ts not in w.long_running and self.expected_duration(ts.prefix) >= placement.TARGET_BACKLOG
        if ts.processing_on is w:
            leave_worker(self, ts)
        if run and counted:
            w.stopping.add(run)
        self.send_worker(w, m.FreeKeys([ts.key], [run]))

    def forget(self, ts: TaskRecord) -> None:
        self.tasks.pop(ts.key, None)
        if self.task_metadata:
            self.task_metadata.pop(ts.key, None)
        self.unrunnable.discard(ts)
        self.unknown_deps.pop(ts, None)

    def report_done(self, ts: TaskRecord) -> None:
        if not ts.n_wanted:
            return
        msg = m.TaskDone(ts.key, ts.type_name, ts.nbytes, tuple([w.address for w in ts.who_has]), ts.value)
        for c in self.clients.values():
            if ts in c.wants:
                self.send_client(c.client_id, msg)
        self._fire_and_forget_done(ts)

    def report_erred(self, ts: TaskRecord) -> None:
        if not ts.n_wanted:
            return
        assert ts.exception is not None
        exc, tb, text = ts.exception
        msg = m.TaskErred(ts.key, exc, tb, text)
        for c in self.clients.values():
            if ts in c.wants:
                self.send_client(c.client_id, msg)
        self._fire_and_forget_done(ts)

    def report_lost(self, ts: TaskRecord) -> None:
        for c in self.clients.values():
            if ts in c.wants:
                self.send_client(c.client_id, m.TasksLost([ts.key], "all copies of the result were lost"))

    def _fire_and_forget_done(self, ts: TaskRecord) -> None:
        faf = self.clients[FIRE_AND_FORGET]
        if ts in faf.wants:
            faf.wants.discard(ts)
            ts.n_wanted -= 1

    def lost_data_exception(self, key: str) -> tuple[Payload, Payload, str]:
        return self.make_exception(
            FutureLost(f"the data of {key!r} was lost with its worker and cannot be recomputed "
                       "(it was scattered, not computed)")
        )

    @staticmethod
    def make_exception(exc: BaseException) -> tuple[Payload, Payload, str]:
        """An exception raised by the scheduler itself, ready to send."""
        return dumps(exc), dumps(None), f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ clients

    def add_client(self, client_id: str, now: float = 0.0) -> ClientRecord:
        if client_id in self.clients:
            raise SchedulerError(f"client id {client_id!r} is already connected")
        c = self.clients[client_id] = ClientRecord(client_id)
        c.last_seen = now
        return c

    def remove_client(self, client_id: str, now: float = 0.0) -> None:
        c = self.clients.pop(client_id, None)
        self.release_acks.pop(client_id, None)
        if c is None:
            return
        self._begin(f"client-left-{client_id}", now)
        recs: Recs = {}
        for ts in by_priority(c.wants):
            self._unwant(ts, recs)
        c.wants.clear()
        self.transitions(recs)
        self._finish()

    def handle_client(self, client_id: str, msgs: Iterable[Any], now: float) -> list[Any]:
        """Apply a batch from a client; return the messages it did not handle
        (requests, for the server to answer)."""
        c = self.clients[client_id]
        c.last_seen = now
        unhandled = []
        for msg in msgs:
            self._begin(f"{type(msg).__name__}-{client_id}", now)
            t = type(msg)
            if t is m.SubmitTasks:
                self.submit_tasks(c, msg)
            elif t is m.ReleaseKeys:
                self.release_keys(c, msg.keys)
                self.release_acks[client_id] = self.release_acks.get(client_id, 0) + 1
            elif t is m.WantKeys:
                self.want_keys(c, msg.keys)
            elif t is m.CancelKeys:
                self.cancel_keys(c, msg.keys, msg.force, msg.reason, msg.msg)
            elif t is m.RetryKeys:
                self.retry_keys(msg.keys)
            elif t is m.FireAndForget:
                self.want_keys(self.clients[FIRE_AND_FORGET], msg.keys, report=False)
            elif t is m.DataScattered:
                data_state.data_scattered(self, c, msg.keys)
            elif t is m.DataMissing:
                data_state.data_missing(self, None, msg)
            elif t is m.Heartbeat:
                pass
            else:
                unhandled.append(msg)
            if self.validate:
                self._end()
        if self.queued:
            for w in self.running_workers():
                self.fill_worker(w)
        self._finish()
        return unhandled

    def submit_tasks(self, c: ClientRecord, msg: m.SubmitTasks) -> None:
        for f in msg.functions:
            if f.id not in self.functions:
                self.functions[f.id] = f.blob
        tasks = self.tasks
        for spec in msg.tasks:
            ts = tasks.get(spec.key)
            if ts is None:
                ts = self._new_task(spec)
                # wanted before any transition: a task that errs (unknown
                # dependencies) while nobody wants it is forgotten at once,
                # and the client would wait for it forever
                self._want(c, ts)
                self.transitions({ts: WAITING})
                continue
            self._want(c, ts)
            self._report_current(c, ts)

    def _new_task(self, spec: m.TaskSpec) -> TaskRecord:
        if spec.func not in self.functions:
            raise SchedulerError(f"task {spec.key!r} refers to a function that was never sent")
        self._seq += 1
        # arguments without out-of-band buffers are kept as their bytes alone
        # (a Payload wrapper per waiting task is 48 bytes of a budget of 800)
        args = spec.args if spec.args.buffers else bytes(spec.args.data)
        ts = TaskRecord(spec.key, spec.func, args, -spec.priority * _PRIORITY_SCALE + self._seq)
        ts.retries = spec.retries
        if spec.workers is not None or spec.resources or spec.actor:
            ts.restrictions = Restrictions(
                frozenset(spec.workers) if spec.workers is not None else None,
                spec.allow_other_workers,
                spec.resources,
                spec.actor,
            )
        self.tasks[spec.key] = ts
        if spec.deps:
            deps = []
            missing = []
            for dk in spec.deps:
                dts = self.tasks.get(dk)
                if dts is None:
                    missing.append(dk)
                    continue
                deps.append(dts)
                if dts.dependents is None:
                    dts.dependents = {ts}
                else:
                    dts.dependents.add(ts)
            deps_t = tuple(deps)
            if deps_t == self._last_deps:
                deps_t = self._last_deps  # many tasks share their inputs: share the tuple
            self._last_deps = ts.deps = deps_t
            if missing:  # released_waiting turns this into an error
                self.unknown_deps[ts] = missing
        return ts

    def resolve_unknown_deps(self, ts: TaskRecord) -> bool:
        """Link the dependencies ``ts`` was submitted with and the scheduler
        did not know, if it knows them all now; else set the error and
        return False.  ``ts`` is released: no counts to fix."""
        missing = self.unknown_deps[ts]
        found = [self.tasks[k] for k in missing if k in self.tasks]
        if len(found) < len(missing):
            gone = [k for k in missing if k not in self.tasks]
            ts.exception = self.make_exception(
                SchedulerError(f"task {ts.key!r} depends on {gone!r}, which the scheduler "
                               "does not know (released or cancelled?)")
            )
            return False
        del self.unknown_deps[ts]
        for dts in found:
            if dts.dependents is None:
                dts.dependents = {ts}
            else:
                dts.dependents.add(ts)
        ts.deps = (*ts.deps, *found)
        return True

    def _want(self, c: ClientRecord, ts: TaskRecord) -> None:
        if ts not in c.wants:
            c.wants.add(ts)
            ts.n_wanted += 1

    def _unwant(self, ts: TaskRecord, recs: Recs) -> None:
        ts.n_wanted -= 1
        if ts.n_wanted == 0 and ts.n_waiters == 0:
            recs[ts] = FORGOTTEN if ts.state is RELEASED else RELEASED

    def _report_current(self, c: ClientRecord, ts: TaskRecord) -> None:
        """Tell a client that just asked for a known key where it stands."""
        st = ts.state
        if st is MEMORY:
            self.send_client(
                c.client_id,
                m.TaskDone(ts.key, ts.type_name, ts.nbytes, tuple([w.address for w in ts.who_has]), ts.value),
            )
            if c.client_id == FIRE_AND_FORGET:
                self._fire_and_forget_done(ts)
        elif st is ERRED:
            assert ts.exception is not None
            self.send_client(c.client_id, m.TaskErred(ts.key, *ts.exception))
            if c.client_id == FIRE_AND_FORGET:
                self._fire_and_forget_done(ts)
        elif st is RELEASED:
            self.transitions({ts: WAITING})

    def want_keys(self, c: ClientRecord, keys: list[str], report: bool = True) -> None:
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                self.send_client(c.client_id, m.TasksLost([key], "the scheduler does not know this key"))
                continue
            self._want(c, ts)
            if report or c.client_id == FIRE_AND_FORGET:
                self._report_current(c, ts)

    def release_keys(self, c: ClientRecord, keys: list[str]) -> None:
        recs: Recs = {}
        for key in keys:
            ts = self.tasks.get(key)
            if ts is not None and ts in c.wants:
                c.wants.discard(ts)
                self._unwant(ts, recs)
        self.transitions(recs)

    def cancel_keys(self, c: ClientRecord, keys: list[str], force: bool = False,
                    reason: str = "", msg: str = "") -> None:
        """Cancel these keys and everything that depends on them, for this
        client (for every client with ``force``); they hear ``reason`` and
        ``msg``."""
        seen: dict[TaskRecord, None] = {}  # ordered: see by_priority
        stack = [self.tasks[k] for k in keys if k in self.tasks]
        while stack:
            ts = stack.pop()
            if ts in seen:
                continue
            seen[ts] = None
            if ts.dependents:
                stack.extend(by_priority(ts.dependents))
        # the canceller hears back about every key it named (it counts on it)
        named = dict.fromkeys(keys)
        told: dict[str, list[str]] = {c.client_id: list(named)}
        recs: Recs = {}
        clients = list(self.clients.values()) if force else [c]
        for ts in seen:
            for cl in clients:
                if ts in cl.wants:
                    cl.wants.discard(ts)
                    if cl is not c or ts.key not in named:
                        told.setdefault(cl.client_id, []).append(ts.key)
                    self._unwant(ts, recs)
        for client_id, cancelled in told.items():
            self.send_client(client_id, m.TasksCancelled(cancelled, reason or "cancelled", msg))
        self.transitions(recs)

    def cancel_unstarted(self, client_id: str, keys: list[str], now: float) -> list[str]:
        """Cancel, for this client, those of ``keys`` that no worker has been
        given yet; return them.  One step, so nothing starts in between: a
        ``concurrent.futures`` cancel that succeeds means the call never runs."""
        self._begin(f"CancelUnstarted-{client_id}", now)
        c = self.clients[client_id]
        chosen = []
        for key in keys:
            ts = self.tasks.get(key)
            if ts is not None and ts in c.wants and ts.state in _NOT_STARTED:
                chosen.append(key)
        if chosen:
            self.cancel_keys(c, chosen)
        self._finish()
        return chosen

    def retry_keys(self, keys: list[str]) -> None:
        order: list[TaskRecord] = []
        seen: set[TaskRecord] = set()
        stack: list[tuple[TaskRecord, bool]] = [(self.tasks[k], False) for k in keys if k in self.tasks]
        while stack:  # post-order: failed dependencies are retried first
            ts, expanded = stack.pop()
            if expanded:
                order.append(ts)
                continue
            if ts in seen or ts.state is not ERRED:
                continue
            seen.add(ts)
            stack.append((ts, True))
            stack.extend((dep, False) for dep in ts.deps if dep.state is ERRED)
        for ts in order:
            if ts.state is ERRED:
                self.transitions({ts: WAITING})

    # ------------------------------------------------------------------ workers

    def add_worker(self, msg: m.RegisterWorker, now: float = 0.0) -> WorkerRecord:
        if msg.address in self.workers:
            raise SchedulerError(f"a worker at {msg.address} is already registered")
        if msg.nthreads < 1:
            raise SchedulerError(f"a worker needs at least one thread, got {msg.nthreads}")
        self._begin(f"worker-joined-{msg.address}", now)
        w = WorkerRecord(msg.address, msg.name or msg.address, msg.nthreads, msg.memory_limit,
                         msg.host, msg.pid, msg.resources)
        w.last_seen = now
        w.supervised = msg.supervised
        self.workers[w.address] = w
        self._running = None
        if self.unrunnable:
            # popitem() takes the last entry first: put the most urgent task last
            ordered = sorted(self.unrunnable, key=_by_priority, reverse=True)
            self.transitions({ts: PROCESSING for ts in ordered})
        self.fill_worker(w)
        for client_id in self.clients:
            self.send_client(client_id, m.WorkersChanged(added=[w.address]))
        self._finish()
        return w

    def remove_worker(self, address: str, now: float = 0.0, reason: str = "") -> None:
        w = self.workers.pop(address, None)
        if w is None:
            return
        self._begin(f"worker-left-{address}", now)
        self._running = None
        # a retiring worker leaves as planned: its running tasks are not to blame
        graceful = w.status == "closing_gracefully"
        w.status = "closed"
        recs: Recs = {}
        for ts in list(w.processing):
            if not graceful:
                ts.suspicious += 1
            if ts.suspicious > self.allowed_failures:
                ts.exception = self.make_exception(KilledWorker(ts.key, address, self.allowed_failures))
                ts.erred_on = address
                recs[ts] = ERRED
            else:
                recs[ts] = WAITING
        for ts in by_priority(w.has_what):
            ts.who_has = tuple(x for x in ts.who_has if x is not w)
            if not ts.who_has and ts.value is None and ts.state is MEMORY:
                recs[ts] = WAITING if (ts.n_wanted or ts.n_waiters) else RELEASED
        w.has_what = set()
        self.transitions(recs)
        gone = m.WorkersChanged(removed=[address])
        for other in self.running_workers():
            # fetches from it stop waiting (it may be stopped or cut off, not dead)
            self.send_worker(other, gone)
            self.fill_worker(other)
        for client_id in self.clients:
            self.send_client(client_id, gone)
        self._finish()

    def handle_worker(self, address: str, msgs: Iterable[Any], now: float) -> list[Any]:
        w = self.workers[address]
        w.last_seen = now
        unhandled = []
        for msg in msgs:
            self._begin(f"{type(msg).__name__}-{address}", now)
            t = type(msg)
            if t is m.TaskFinished:
                self.task_finished(w, msg)
            elif t is m.TaskFailed:
                self.task_failed(w, msg)
            elif t is m.ReplicasAdded:
                data_state.replicas_added(self, w, msg)
            elif t is m.DataMissing:
                data_state.data_missing(self, w, msg)
            elif t is m.TaskSeceded:
                self.task_seceded(w, msg)
            elif t is m.WorkerStatus:  # paused by its memory, or resumed
                control_state.set_paused(self, w, msg.status == "paused")
            elif t is m.RunsEnded:
                w.stopping.difference_update(msg.run_ids)
            elif t is m.Heartbeat:
                w.metrics = msg.metrics
                w.memory = int(msg.metrics.get("memory", 0))
                w.executing = int(msg.metrics.get("executing", 0))
            else:
                unhandled.append(msg)
            if self.validate:
                self._end()
        if w.status == "running":
            self.fill_worker(w)
        self._finish()
        return unhandled

    def task_finished(self, w: WorkerRecord, msg: m.TaskFinished) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ts.processing_on is not w or msg.run_id != ts.run_id:
            # about a run taken back since: w was told to drop it, so it is no
            # copy, whatever became of the key (forgotten, running elsewhere,
            # submitted again); an answer to a current run carries its id
            return
        old = self.durations.get(ts.prefix)
        d = msg.duration
        self.durations[ts.prefix] = d if old is None else 0.7 * old + 0.3 * d
        ts.nbytes = msg.nbytes
        ts.type_name = msg.type_name
        ts.value = msg.value
        self._add_replica(ts, w)
        self.transitions({ts: MEMORY})

    def task_failed(self, w: WorkerRecord, msg: m.TaskFailed) -> None:
        ts = self.tasks.get(msg.key)
        if ts is None or ts.processing_on is not w or msg.run_id != ts.run_id:
            return  # about a run taken back since
        if msg.reschedule:  # the task asked to run again: not a failure
            self.transitions({ts: WAITING})
            return
        if ts.retries > 0:
            ts.retries -= 1
            self.transitions({ts: WAITING})
        else:
            ts.exception = (msg.exception, msg.traceback, msg.text)
            ts.erred_on = w.address
            self.transitions({ts: ERRED})

    def task_seceded(self, w: WorkerRecord, msg: m.TaskSeceded) -> None:
        """A task waits on other tasks without a slot: give the slot away."""
        ts = self.tasks.get(msg.key)
        if ts is None or ts.processing_on is not w or msg.run_id != ts.run_id:
            return
        if ts not in w.long_running:
            w.long_running.add(ts)
            w.occupancy = max(0.0, w.occupancy - w.processing[ts])
            w.processing[ts] = 0.0

    def _add_replica(self, ts: TaskRecord, w: WorkerRecord) -> None:
        if w not in ts.who_has:
            ts.who_has = (*ts.who_has, w)
            w.has_what.add(ts)
            w.nbytes += ts.nbytes

    def has_queued(self) -> bool:
        """Whether tasks wait in the queue.  Entries of tasks that left it
        (released, cancelled, done elsewhere) are dropped lazily, here: a
        queue of such leftovers alone must not make new tasks wait in it."""
        queued = self.queued
        while queued and queued[0][2].state is not QUEUED:
            heapq.heappop(queued)
        return bool(queued)

    def fill_worker(self, w: WorkerRecord) -> None:
        """Give ``w`` queued root tasks while it has free slots.  The slots
        depend on the duration of the task at the head of the queue (many
        for tiny tasks, one ahead per thread for long ones), so they are
        counted for each task taken, never from an entry that left the
        queue: a cancelled tiny task there made long ones pile up on one
        worker, behind each other."""
        queued = self.queued
        prefix = limit = None  # the slots for the head's prefix (durations do not change in here)
        while self.has_queued():
            head = queued[0][2].prefix
            if head != prefix:
                prefix, limit = head, worker_slots(w, self.expected_duration(head))
            if w.busy >= limit:  # type: ignore[operator]
                break
            ts = heapq.heappop(queued)[2]
            self.assign(ts, w)
            self.log.append((ts.key, "queued", "processing", self.stimulus, self.now))
            self.transition_counter += 1  # the log's readers count entries by it

    # ------------------------------------------------------------------ queries

    def who_has(self, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
        if keys is None:
            keys = self.tasks
        out = {}
        for k in keys:
            ts = self.tasks.get(k)
            out[k] = [w.address for w in ts.who_has] if ts is not None else []
        return out

    def has_what(self, addresses: Iterable[str] | None = None) -> dict[str, list[str]]:
        if addresses is None:
            addresses = self.workers
        return {
            a: sorted(ts.key for ts in self.workers[a].has_what) if a in self.workers else []
            for a in addresses
        }

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ts in self.tasks.values():
            out[ts.state.value] = out.get(ts.state.value, 0) + 1
        return out

    # ------------------------------------------------------------------ bookkeeping

    def _begin(self, stimulus: str, now: float) -> None:
        self.stimulus = stimulus
        self.now = now

    def _end(self) -> None:
        if self.validate:
            from shoal.scheduler.invariants import check_invariants

            check_invariants(self)

    def _finish(self) -> None:
        """At the end of every handled batch or event."""
        self.fill_freed()
        self._end()


def _by_priority(ts: TaskRecord) -> int:
    return ts.priority


__all__ = ["FIRE_AND_FORGET", "SchedulerState", "SchedulerTaskStatus"]
