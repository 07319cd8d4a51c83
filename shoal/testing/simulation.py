"""A deterministic simulation of a whole cluster, in memory, in one thread.

The scheduler's state machine is wired to several worker state machines and
to simulated clients (``sim_client``); a seeded ``random.Random`` decides
which message is delivered next, how long it travels, how long each task
runs, what the clients do and when a worker dies.  After every step the
invariants of every machine are checked; at quiescence every future a client
holds must have ended with the value or error its graph implies (evaluated
locally in plain Python); when every client has let go, the scheduler must
hold no task and the workers no data.

Rules:
1. Nothing but the seed decides what happens: no clock, threads, sockets or
   asyncio, and no iteration over a set (string hashes change per process).
   ``python scripts/simulate.py --seed N --verbose`` replays seed N exactly.
2. A link (sender, receiver, channel) is FIFO, as one TCP connection is;
   different links interleave at random, with random delays.
3. Simulated workers really run the submitted functions on real values;
   arguments, results, exceptions and fetched data go through the same
   ``shoal.protocol.serialize`` calls as the worker server and executor.
4. A worker dies abruptly (its queued messages dropped both ways, the
   scheduler told at once) or the way a closed TCP connection looks (what it
   sent before dying still arrives, then the scheduler notices).  A worker
   may first be set retiring (``retire_workers``: no new tasks; its leaving
   is not held against its tasks); retiring workers die before the drain.

Data flow::

    SimClient --SubmitTasks/...--> [link] --> SchedulerState.handle_client
    SchedulerState.take_messages --> [links] --> WorkerState.handle_scheduler
    WorkerState.take --Execute--> function called now, "done" timer later
                     --GatherDep--> [data link] --> peer's values --> reply
                     --TaskFinished/...--> [link] --> handle_worker
    SchedulerState --TaskDone/...--> [link] --> SimClient.receive (checked)
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from shoal.protocol import messages as m
from shoal.scheduler import control_state
from shoal.scheduler.state import SchedulerState
from shoal.testing import sim_checks, sim_tasks
from shoal.testing.sim_client import Expect, SimClient, describe, error_acceptable
from shoal.testing.sim_worker import SCHEDULER, SimWorker, short


@dataclass(frozen=True)
class Profile:
    """The size of a simulation; everything else is drawn from the seed."""

    steps: int = 300  # steps in which clients act and workers die
    max_workers: int = 4
    max_clients: int = 3
    max_kills: int = 5
    drain_limit: int = 50_000  # steps to reach quiescence before calling it a livelock


PROFILES = {
    "small": Profile(steps=120, max_workers=3, max_clients=2, max_kills=3),
    "default": Profile(),
    "large": Profile(steps=1200, max_workers=6, max_clients=4, max_kills=12),
}


class SimulationFailure(AssertionError):
    """A seed broke an invariant or an expectation."""

    def __init__(self, seed: int, profile: str, step: int, message: str, trace: list[str],
                 options: str = "") -> None:
        self.seed = seed
        self.profile = profile
        self.step = step
        self.message = message
        self.trace = trace
        tail = "\n".join(trace[-60:])
        super().__init__(
            f"simulation seed {seed} (profile {profile!r}) failed at step {step}: {message}\n"
            f"replay: python scripts/simulate.py --seed {seed} --profile {profile}{options} --verbose\n"
            f"last events:\n{tail}"
        )


class _Event:
    __slots__ = ("data", "dst", "kind", "link", "ready_at", "src")

    def __init__(self, ready_at: int, kind: str, src: str, dst: str, data: Any,
                 link: tuple[str, str, str] | None) -> None:
        self.ready_at = ready_at
        self.kind = kind
        self.src = src
        self.dst = dst
        self.data = data
        self.link = link


def summary(msg: Any) -> str:
    t = type(msg)
    if t is m.SubmitTasks:
        return "Submit(" + ", ".join(
            short(s.key) + (f"<-{'+'.join(short(d) for d in s.deps)}" if s.deps else "")
            for s in msg.tasks
        ) + ")"
    if t is m.ExecuteTask:
        return f"Execute({short(msg.key)} deps={[short(d.key) for d in msg.deps]})"
    if t is m.DataScattered:
        return f"DataScattered({[(short(k.key), k.workers) for k in msg.keys]})"
    key = getattr(msg, "key", None)
    if key is not None:
        extra = f" {msg.workers}" if t is m.DataMissing else ""
        return f"{t.__name__}({short(key)}{extra})"
    keys = getattr(msg, "keys", None)
    if keys is not None:
        extra = " force" if t is m.CancelKeys and msg.force else ""
        return f"{t.__name__}({','.join(short(k) for k in keys)}{extra})"
    if t is m.WorkersChanged:
        return f"WorkersChanged(+{msg.added} -{msg.removed})"
    return t.__name__


class Simulation:
    def __init__(self, seed: int, profile: str = "default", *, verbose: bool = False,
                 trace_size: int = 300, shared_scatter_keys: bool = False) -> None:
        self.seed = seed
        # Content-hashed scatter keys (scatter(hash=True)) let two scatters of
        # equal data share a key, which exposes a known race: a release of
        # the first copy frees the data a second scatter just put on a worker
        # before the scheduler hears of it.  Off by default until fixed.
        self.shared_scatter_keys = shared_scatter_keys
        self.profile_name = profile
        self.profile = PROFILES[profile]
        self.verbose = verbose
        self.rng = random.Random(seed)
        self.trace: deque[str] = deque(maxlen=trace_size)
        self._digest = hashlib.blake2b(digest_size=16)
        self.step = 0
        self.now = 0
        self.links: dict[tuple[str, str, str], deque[_Event]] = {}
        self.timers: list[_Event] = []
        self.workers: dict[str, SimWorker] = {}
        self.clients: dict[str, SimClient] = {}
        self.n_workers_made = 0
        self.names: dict[str, str] = {}  # address -> worker name
        self.restricted: dict[str, None] = {}  # names used in workers= restrictions
        self.n_clients_made = 0
        self.kills: dict[str, int] = {}  # key -> times its worker died under it
        self.n_kills = 0
        self.attempts: dict[str, int] = {}
        # what the clients' checks need to know
        self.expect: dict[str, Expect] = {}
        self.kinds: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.adopted: set[str] = set()
        self.scatter_killed: set[str] = set()
        self.scatter_released: set[str] = set()
        self.scatter_keys: set[str] = set()
        self.fired: list[str] = []
        self.specs: dict[str, tuple[m.TaskSpec, m.FunctionDef]] = {}  # as first submitted
        self.let_go: list[str] = []  # submitted keys released or fired, oldest first
        self.stats: dict[str, int] = {}
        rng = self.rng
        p = self.profile
        self.allowed_failures = rng.choice([1, 2, 3])
        self.max_delay = rng.choice([0, 1, 2, 5, 10, 30])
        self.task_time = rng.choice([1, 2, 5, 15, 40])
        self.inline_limit = rng.choice([0, 0, 12, 64, 1 << 20])
        self.p_client = rng.choice([0.08, 0.15, 0.3])
        self.p_kill = rng.choice([0.0, 0.005, 0.02, 0.05])
        self.p_churn = rng.choice([0.0, 0.01])
        self.p_coalesce = rng.choice([0.0, 0.5])
        self.scheduler = SchedulerState(validate=True, allowed_failures=self.allowed_failures)
        self.initial_workers = rng.randint(1, p.max_workers)
        self.initial_clients = rng.randint(1, p.max_clients)

    # ------------------------------------------------------------------ running

    def run(self) -> dict[str, int]:
        """Run the whole scenario; raise ``SimulationFailure`` on the first problem."""
        try:
            with sim_tasks.attempts(self.attempts):
                self.log(
                    f"seed={self.seed} profile={self.profile_name} workers={self.initial_workers} "
                    f"clients={self.initial_clients} delay<={self.max_delay} task<={self.task_time} "
                    f"inline<={self.inline_limit} p_client={self.p_client} p_kill={self.p_kill} "
                    f"p_churn={self.p_churn} p_coalesce={self.p_coalesce} "
                    f"allowed_failures={self.allowed_failures} shared_keys={self.shared_scatter_keys}"
                )
                for _ in range(self.initial_workers):
                    self.add_worker()
                for _ in range(self.initial_clients):
                    self.add_client()
                for _ in range(self.profile.steps):
                    self._active_step()
                self._drain("drain")
                sim_checks.check_quiescent(self)
                self._teardown()
                self._drain("teardown")
                sim_checks.check_empty(self)
        except SimulationFailure:
            raise
        except Exception as e:
            raise SimulationFailure(
                self.seed, self.profile_name, self.step, f"{type(e).__name__}: {e}", list(self.trace),
                self._options(),
            ) from e
        self.stats["steps"] = self.step
        return self.stats

    def digest(self) -> str:
        """A fingerprint of everything that happened: equal runs, equal digests."""
        return self._digest.hexdigest()

    def fail(self, message: str) -> None:
        raise SimulationFailure(self.seed, self.profile_name, self.step, message, list(self.trace),
                                self._options())

    def _options(self) -> str:
        return " --shared-scatter-keys" if self.shared_scatter_keys else ""

    def log(self, line: str) -> None:
        line = f"{self.step:6d} t={self.now:<6d} {line}"
        self.trace.append(line)
        self._digest.update(line.encode())
        if self.verbose:
            print(line)

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def _active_step(self) -> None:
        self.step += 1
        self.now += 1
        rng = self.rng
        r = rng.random()
        clients = [c for c in self.clients.values() if c.connected]
        if r < self.p_client and clients:
            rng.choice(clients).act()
        elif r < self.p_client + self.p_kill:
            self._chaos()
        elif r < self.p_client + self.p_kill + self.p_churn:
            self._client_churn()
        else:
            self._deliver_one()
        sim_checks.check_step(self)

    def _chaos(self) -> None:
        alive = self.alive_workers()
        running = [a for a in alive if self.scheduler.workers[a].status == "running"]
        if len(running) > 1 and self.rng.random() < 0.2:
            address = self.rng.choice(running)
            self.log(f"{address} retires")
            self.count("retires")
            control_state.set_retiring(self.scheduler, address, True, float(self.now))
            self._flush_scheduler()
            return
        if alive and self.n_kills < self.profile.max_kills and (
            len(alive) > 1 or self.rng.random() < 0.3
        ):
            busy = [a for a in alive if self.workers[a].state.executing]
            self.kill_worker(self.rng.choice(busy or alive))
        if not alive or self.rng.random() < 0.5:
            self.add_worker()

    def _client_churn(self) -> None:
        leaving = [c for c in self.clients.values() if c.connected and not c.scatters]
        if leaving:
            self.disconnect_client(self.rng.choice(leaving))
        self.add_client()

    def _drain(self, phase: str) -> None:
        for address in self.alive_workers():  # a retirement ends with the worker leaving
            if self.scheduler.workers[address].status == "closing_gracefully":
                self.kill_worker(address)
        if not self.alive_workers():
            self.add_worker()
        for name in self.restricted:  # so that no task waits for its worker forever
            if all(self.names[a] != name for a in self.alive_workers()):
                self.add_worker(name)
        start = self.step
        while self.links or self.timers:
            self.step += 1
            self.now += 1
            self._deliver_one()
            sim_checks.check_step(self)
            if self.step - start > self.profile.drain_limit:
                self.fail(f"no quiescence within {self.profile.drain_limit} steps ({phase}): livelock")

    def _teardown(self) -> None:
        for c in list(self.clients.values()):
            if not c.connected:
                continue
            if self.rng.random() < 0.5:
                keys = list(c.futures)
                c.futures.clear()
                if keys:
                    self.client_send(c.id, [m.ReleaseKeys(keys)])
            else:
                self.disconnect_client(c)

    # ------------------------------------------------------------------ the network

    def push(self, src: str, dst: str, channel: str, kind: str, data: Any) -> None:
        link = (src, dst, channel)
        q = self.links.get(link)
        if q is None:
            q = self.links[link] = deque()
        if kind == "msgs" and q and q[-1].kind == "msgs" and self.rng.random() < self.p_coalesce:
            q[-1].data = q[-1].data + data  # sent in the same tick: one batch, as the servers do
            return
        ready = self.now + self.rng.randint(0, self.max_delay)
        if q and q[-1].ready_at > ready:
            ready = q[-1].ready_at  # FIFO: never overtake what was sent before
        q.append(_Event(ready, kind, src, dst, data, link))

    def timer(self, delay: int, worker: str, data: Any) -> None:
        """A task run on ``worker`` ends after ``delay``; dropped if it dies."""
        self.timers.append(_Event(self.now + delay, "done", worker, worker, data, None))

    def _deliver_one(self) -> None:
        ready = [q[0] for q in self.links.values() if q[0].ready_at <= self.now]
        ready.extend(e for e in self.timers if e.ready_at <= self.now)
        if not ready:
            pending = [q[0].ready_at for q in self.links.values()]
            pending.extend(e.ready_at for e in self.timers)
            if not pending:
                return
            self.now = min(pending)
            ready = [q[0] for q in self.links.values() if q[0].ready_at <= self.now]
            ready.extend(e for e in self.timers if e.ready_at <= self.now)
        ev = self.rng.choice(ready)
        if ev.link is not None:
            q = self.links[ev.link]
            q.popleft()
            if not q:
                del self.links[ev.link]
        else:
            self.timers.remove(ev)
        getattr(self, "_on_" + ev.kind.replace("-", "_"))(ev)

    def client_send(self, client_id: str, msgs: list[Any]) -> None:
        self.log(f"{client_id} sends {', '.join(summary(x) for x in msgs)}")
        self.push(client_id, SCHEDULER, "ctl", "msgs", msgs)

    def put_data(self, client_id: str, worker: str, key: str, value: Any, payload: Any) -> None:
        self.log(f"{client_id} puts {short(key)} on {worker}")
        self.count("scatters")
        self.scatter_keys.add(key)
        self.push(client_id, worker, "data", "put-data", (key, value, payload))

    def alive_workers(self) -> list[str]:
        return [a for a, w in self.workers.items() if w.alive]

    # ------------------------------------------------------------------ deliveries

    def _on_msgs(self, ev: _Event) -> None:
        msgs = ev.data
        if ev.dst == SCHEDULER:
            self.log(f"{ev.src} -> scheduler: {', '.join(summary(x) for x in msgs)}")
            if ev.src in self.clients:
                unhandled = self.scheduler.handle_client(ev.src, msgs, float(self.now))
            else:
                unhandled = self.scheduler.handle_worker(ev.src, msgs, float(self.now))
            if unhandled:
                self.fail(f"the scheduler did not handle {[summary(x) for x in unhandled]}")
            self._flush_scheduler()
        elif ev.dst in self.workers:
            w = self.workers[ev.dst]
            if not w.alive:
                return
            self.log(f"scheduler -> {ev.dst}: {', '.join(summary(x) for x in msgs)}")
            w.receive(msgs)
        else:
            c = self.clients.get(ev.dst)
            if c is None or not c.connected:
                return
            self.log(f"scheduler -> {ev.dst}: {', '.join(summary(x) for x in msgs)}")
            c.receive(msgs)

    def _on_closed(self, ev: _Event) -> None:
        if ev.src in self.clients:
            self.log(f"scheduler notices that {ev.src} disconnected")
            self.scheduler.remove_client(ev.src, float(self.now))
            del self.clients[ev.src]
        else:
            self.log(f"scheduler notices that {ev.src} died")
            self._remove_worker(ev.src)
        self._flush_scheduler()

    def _flush_scheduler(self) -> None:
        to_workers, to_clients = self.scheduler.take_messages()
        for address, msgs in to_workers.items():
            w = self.workers.get(address)
            if w is not None and w.alive:
                self.push(SCHEDULER, address, "ctl", "msgs", msgs)
        for client_id, msgs in to_clients.items():
            c = self.clients.get(client_id)
            if c is not None and c.connected:
                self.push(SCHEDULER, client_id, "ctl", "msgs", msgs)

    def _on_done(self, ev: _Event) -> None:
        self.workers[ev.src].done(*ev.data)

    def _on_get_data(self, ev: _Event) -> None:
        peer = self.workers.get(ev.dst)
        reply = peer.get_data(ev.data) if peer is not None and peer.alive else None
        self.push(ev.dst, ev.src, "data", "data-reply", reply)

    def _on_data_reply(self, ev: _Event) -> None:
        w = self.workers[ev.dst]
        if w.alive:
            w.got_data(ev.src, ev.data)

    def _on_put_data(self, ev: _Event) -> None:
        key, value, payload = ev.data
        w = self.workers.get(ev.dst)
        ok = w is not None and w.alive
        if w is not None and ok:
            w.put_data(key, value, payload)
        self.push(ev.dst, ev.src, "data", "put-ack", (key, ok))

    def _on_put_ack(self, ev: _Event) -> None:
        key, ok = ev.data
        c = self.clients.get(ev.dst)
        if c is not None:
            c.put_acked(key, ev.src, ok)

    # ------------------------------------------------------------------ membership

    def add_worker(self, name: str | None = None) -> None:
        self.n_workers_made += 1
        address = f"sim://w{self.n_workers_made}"
        nthreads = self.rng.randint(1, 3)
        if name is None:
            alive = [self.names[a] for a in self.alive_workers()]
            dead = [n for a, n in self.names.items() if n not in alive]
            # a worker restarted under its old name, as a nanny restarts it
            name = self.rng.choice(dead) if dead and self.rng.random() < 0.3 else f"w{self.n_workers_made}"
        self.workers[address] = SimWorker(self, address, nthreads)
        self.names[address] = name
        self.log(f"{address} ({name}) joins with {nthreads} threads")
        self.count("workers_added")
        self.scheduler.add_worker(m.RegisterWorker(address, name, nthreads), float(self.now))
        self._flush_scheduler()

    def restriction_name(self) -> str:
        """A worker name for ``workers=``: alive, dead, or never seen."""
        names = list(dict.fromkeys(self.names.values()))
        name = self.rng.choice(names) if names and self.rng.random() < 0.9 else "w-later"
        self.restricted[name] = None
        return name

    def kill_worker(self, address: str) -> None:
        w = self.workers[address]
        w.alive = False
        self.n_kills += 1
        self.count("kills")
        graceful = self.rng.random() < 0.5
        self.log(f"{address} dies ({'connection closes' if graceful else 'abruptly'}) "
                  f"executing {sorted(w.state.executing)}")
        self.timers = [e for e in self.timers if e.src != address]
        for key in w.data:
            if key in self.scatter_keys:
                self.scatter_killed.add(key)
        w.data = {}
        self.links.pop((SCHEDULER, address, "ctl"), None)
        if graceful:
            self.push(address, SCHEDULER, "ctl", "closed", None)
        else:
            self.links.pop((address, SCHEDULER, "ctl"), None)
            self._remove_worker(address)
            self._flush_scheduler()

    def _remove_worker(self, address: str) -> None:
        wr = self.scheduler.workers.get(address)
        if wr is not None and wr.status != "closing_gracefully":  # a retiring one leaves as planned
            for ts in wr.processing:
                self.kills[ts.key] = self.kills.get(ts.key, 0) + 1
        self.scheduler.remove_worker(address, float(self.now))

    def add_client(self) -> None:
        self.n_clients_made += 1
        client_id = f"client-{self.n_clients_made}"
        self.clients[client_id] = SimClient(self, client_id)
        self.scheduler.add_client(client_id, float(self.now))
        self.log(f"{client_id} connects")

    def disconnect_client(self, c: SimClient) -> None:
        c.connected = False
        self.log(f"{c.id} disconnects")
        for key in c.futures:
            if self.expect[key].scattered:
                self.scatter_released.add(key)
        self.push(c.id, SCHEDULER, "ctl", "closed", None)

    # ------------------------------------------------------------------ expectations

    def register(self, key: str, exp: Expect, kind: str) -> None:
        old = self.expect.get(key)
        if old is None:
            self.expect[key] = exp
            self.kinds[key] = kind
        elif not old.same(exp):
            self.fail(f"harness bug: two meanings for key {key!r}")

    def check_value(self, key: str, value: Any, where: str) -> None:
        exp = self.expect[key]
        if not exp.has_value:
            self.fail(f"{key!r} produced a value ({where}) but can only fail with {sorted(exp.errors)}")
        if value != exp.value:
            self.fail(f"{key!r} has the wrong value ({where}): {str(value)[:60]} != {str(exp.value)[:60]}")
        self.count("values_checked")

    def check_error(self, key: str, exc: BaseException) -> None:
        self.count("errors_checked")
        if not error_acceptable(self, key, exc):
            exp = self.expect[key]
            self.fail(f"{key!r} failed with {describe(exc)!r}; expected "
                      f"{'a value or ' if exp.has_value else ''}{sorted(exp.errors)}")

def run_simulation(seed: int, profile: str = "default", verbose: bool = False) -> dict[str, int]:
    """Run one seed; raise ``SimulationFailure`` if anything goes wrong."""
    return Simulation(seed, profile, verbose=verbose).run()


__all__ = ["PROFILES", "Profile", "Simulation", "SimulationFailure", "run_simulation"]

