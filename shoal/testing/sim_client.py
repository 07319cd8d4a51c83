"""The simulated clients of ``shoal.testing.simulation``: an in-memory model of
what ``shoal.Client`` says to the scheduler, plus the expected outcome of
every key, computed by evaluating the same graph in plain Python.

Rules:
1. A client speaks only protocol messages (``SubmitTasks``, ``ReleaseKeys``,
   ``CancelKeys``, ``RetryKeys``, ``FireAndForget``, ``WantKeys``,
   ``DataScattered``), sent through the simulation's FIFO link to the
   scheduler; scattered data goes to workers over the data plane first.
2. All randomness comes from the simulation's ``random.Random``; nothing
   here iterates over a set, so a seed replays exactly.
3. A client never holds a key again once it has let go of it (released,
   cancelled, lost track of it).  Without sequence numbers on the wire a
   client cannot tell a ``TasksCancelled`` meant for the old future from one
   for the new, so a model that re-held keys would report false failures.
   Keys still come back through *other* clients (pure keys are shared), which
   is the scheduler-side scenario that matters.
4. Every value or error a client hears of is checked against ``Expect`` at
   once; the harness checks the final states at quiescence.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from shoal.errors import FutureLost, KilledWorker, SchedulerError, SerializationError
from shoal.protocol import messages as m
from shoal.protocol.serialize import (
    collecting_dependencies,
    dumps,
    dumps_function,
    dumps_task_args,
    loads,
    loads_exception,
    resolve_dependency,
)
from shoal.testing import sim_tasks
from shoal.worker.sizeof import sizeof

if TYPE_CHECKING:
    from shoal.testing.simulation import Simulation

PENDING = "pending"
FINISHED = "finished"
ERROR = "error"
CANCELLED = "cancelled"
LOST = "lost"
UNKNOWN = "unknown"  # adopted a key the scheduler had already forgotten

#: (action, weight) for a client's turn
ACTIONS = [
    ("submit", 40),
    ("release", 14),
    ("cancel", 6),
    ("retry", 6),
    ("fire_and_forget", 5),
    ("scatter", 8),
    ("adopt", 4),
    ("resubmit", 6),
]
#: (function name, weight) for a new task
OPS = [
    ("inc", 8),
    ("add", 8),
    ("total", 4),
    ("combine", 3),
    ("fail", 2),
    ("flaky", 3),
    ("make_blob", 2),
    ("blob_value", 3),
    ("opaque", 1),
    ("unwrap", 2),
]


class Ref:
    """Stands for a key inside task arguments, as ``Future`` does: pickled
    inside ``dumps_task_args`` it becomes a dependency."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> Any:
        deps = collecting_dependencies()
        if deps is None:
            raise TypeError("a Ref only pickles inside task arguments")
        deps.add(self.key)
        return (resolve_dependency, (self.key,))

    def __repr__(self) -> str:
        return f"Ref({self.key!r})"


def refs_in(obj: Any, out: dict[str, None]) -> dict[str, None]:
    """The keys referenced in ``obj``, in order of appearance."""
    if type(obj) is Ref:
        out[obj.key] = None
    elif type(obj) in (list, tuple):
        for x in obj:
            refs_in(x, out)
    elif type(obj) is dict:
        for x in obj.values():
            refs_in(x, out)
    return out


def substitute(obj: Any, values: dict[str, Any]) -> Any:
    if type(obj) is Ref:
        return values[obj.key]
    if type(obj) is list:
        return [substitute(x, values) for x in obj]
    if type(obj) is tuple:
        return tuple(substitute(x, values) for x in obj)
    if type(obj) is dict:
        return {k: substitute(v, values) for k, v in obj.items()}
    return obj


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Expect:
    """The outcomes a key may end with.  ``errors`` are descriptions
    (``"Type: message"``); ``ancestors`` includes the key itself."""

    __slots__ = ("ancestors", "errors", "has_value", "scattered", "value")

    def __init__(self, has_value: bool, value: Any, errors: frozenset[str],
                 ancestors: frozenset[str], scattered: bool = False) -> None:
        self.has_value = has_value
        self.value = value
        self.errors = errors
        self.ancestors = ancestors
        self.scattered = scattered

    def same(self, other: Expect) -> bool:
        return (self.has_value, self.errors, self.scattered) == (
            other.has_value, other.errors, other.scattered
        ) and (not self.has_value or self.value == other.value)


def expect_task(key: str, name: str, template: tuple[Any, ...], retries: int,
                known: dict[str, Expect]) -> Expect:
    """Evaluate one task locally, given what its dependencies may end with."""
    deps = [known[k] for k in refs_in(template, {})]
    errors: set[str] = set()
    ancestors = {key}
    for d in deps:
        errors |= d.errors
        ancestors |= d.ancestors
    has_value, value = False, None
    if all(d.has_value for d in deps):
        args = substitute(template, {k: known[k].value for k in refs_in(template, {})})
        func = sim_tasks.FUNCTIONS[name][0]
        if func is sim_tasks.flaky:
            token, n, _ = args
            has_value, value = True, sim_tasks.flaky_value(*args)
            if n > retries:  # accepted failures <= raises <= n; more is luck
                errors.add(f"SimulatedError: flaky({token})")
        else:
            try:
                value = func(*args)
                has_value = True
            except sim_tasks.SimulatedError as e:
                errors.add(describe(e))
    return Expect(has_value, value, frozenset(errors), frozenset(ancestors))


class FutureModel:
    __slots__ = ("key", "status")

    def __init__(self, key: str, status: str) -> None:
        self.key = key
        self.status = status


class SimClient:
    def __init__(self, sim: Simulation, client_id: str) -> None:
        self.sim = sim
        self.id = client_id
        self.futures: dict[str, FutureModel] = {}
        self.ever: set[str] = set()  # keys held once; only tested, never iterated
        self.functions_sent: set[bytes] = set()
        self.scatters: dict[str, dict[str, Any]] = {}  # key -> pending puts
        self.connected = True

    # ------------------------------------------------------------------ helpers

    def _hold(self, key: str, status: str) -> None:
        self.futures[key] = FutureModel(key, status)
        self.ever.add(key)

    def _send(self, msgs: list[Any]) -> None:
        self.sim.client_send(self.id, msgs)

    def _pick(self, keys: list[str], most: int) -> list[str]:
        rng = self.sim.rng
        return rng.sample(keys, min(len(keys), rng.randint(1, most)))

    def usable(self, kind: str) -> list[str]:
        return [k for k, f in self.futures.items()
                if f.status not in (CANCELLED, UNKNOWN) and self.sim.kinds[k] == kind]

    # ------------------------------------------------------------------ actions

    def act(self) -> None:
        rng = self.sim.rng
        action = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        getattr(self, f"act_{action}")()

    def act_submit(self) -> None:
        rng = self.sim.rng
        sim = self.sim
        ints, blobs, opaques = self.usable("int"), self.usable("blob"), self.usable("opaque")
        specs: list[m.TaskSpec] = []
        functions: list[m.FunctionDef] = []

        def arg() -> Any:
            return Ref(rng.choice(ints)) if ints and rng.random() < 0.7 else rng.randint(0, 4)

        for _ in range(rng.randint(1, 4)):
            name = rng.choices([o for o, _ in OPS], [w for _, w in OPS])[0]
            retries = rng.choice([0, 0, 0, 1, 2])
            template: tuple[Any, ...]
            if name in ("inc", "fail", "make_blob", "opaque"):
                template = (arg(),)
            elif name == "add":
                template = (arg(), arg())
            elif name == "total":
                template = ([arg() for _ in range(rng.randint(1, 4))],)
            elif name == "combine":
                template = ({"a": arg(), "b": arg()},)
            elif name == "flaky":
                template = (f"t{rng.getrandbits(40):010x}", rng.randint(0, 3), arg())
                retries = rng.randint(0, 3)
            elif name == "blob_value" and blobs:
                template = (Ref(rng.choice(blobs)),)
            elif name == "unwrap" and opaques:
                template = (Ref(rng.choice(opaques)),)
            else:
                continue
            if rng.random() < 0.8:  # pure: the same call gives the same key
                token = hashlib.blake2b(repr((name, template, retries)).encode(), digest_size=16)
                key = f"{name}-{token.hexdigest()}"
            else:
                key = f"{name}-{rng.getrandbits(128):032x}"
            if key in self.futures and self.futures[key].status not in (CANCELLED, UNKNOWN):
                continue  # already held: the client sends nothing (pure-key dedup)
            if key in self.ever:
                continue  # rule 3
            sim.register(key, expect_task(key, name, template, retries, sim.expect),
                         sim_tasks.FUNCTIONS[name][1])
            func = sim_tasks.FUNCTIONS[name][0]
            func_id, blob = dumps_function(func)
            if func_id not in self.functions_sent:
                self.functions_sent.add(func_id)
                functions.append(m.FunctionDef(func_id, blob))
            payload, deps = dumps_task_args(template, {})
            priority = rng.choice([0, 0, 0, 1, -1])
            workers, loose = None, False
            if rng.random() < 0.08:  # workers=[name], as a worker restarted under its name
                workers = [sim.restriction_name()]
                loose = rng.random() < 0.5
            spec = m.TaskSpec(key, func_id, payload, tuple(sorted(deps)), priority, retries, workers, loose)
            specs.append(spec)
            sim.specs[key] = (spec, m.FunctionDef(func_id, blob))
            self._hold(key, PENDING)
            {"int": ints, "blob": blobs, "opaque": opaques}[sim.kinds[key]].append(key)
        if specs:
            self._send([m.SubmitTasks(specs, functions)])

    def act_release(self) -> None:
        keys = self._pick(list(self.futures), 3)
        if keys:
            for k in keys:
                self._let_go(k)
            self._send([m.ReleaseKeys(keys)])
            self._race_resubmit()

    def _race_resubmit(self) -> None:
        """Sometimes another client asks at once for what this one let go:
        the scheduler may still be running it (and a worker may get it back
        while its cancelled run is still going)."""
        sim = self.sim
        others = [c for c in sim.clients.values() if c is not self and c.connected]
        if others and sim.let_go and sim.rng.random() < 0.3:
            sim.rng.choice(others).act_resubmit(latest=True)

    def _let_go(self, key: str) -> None:
        del self.futures[key]
        if self.sim.expect[key].scattered:
            self.sim.scatter_released.add(key)
        elif key in self.sim.specs:
            self.sim.let_go.append(key)

    def act_resubmit(self, latest: bool = False) -> None:
        """Submit again a task another client let go of lately: it may still
        be running, be kept as lineage, or be forgotten."""
        sim = self.sim
        usable = {k: None for k, f in self.futures.items() if f.status not in (CANCELLED, UNKNOWN)}
        keys = [k for k in sim.let_go[-30:] if k not in self.ever
                and all(d in usable for d in sim.specs[k][0].deps)]
        if not keys:
            return
        key = keys[-1] if latest or sim.rng.random() < 0.5 else sim.rng.choice(keys)
        spec, function = sim.specs[key]
        functions = [] if function.id in self.functions_sent else [function]
        self.functions_sent.add(function.id)
        self._hold(spec.key, PENDING)
        self._send([m.SubmitTasks([spec], functions)])

    def act_cancel(self) -> None:
        keys = self._pick([k for k, f in self.futures.items() if f.status != CANCELLED], 2)
        if not keys:
            return
        force = self.sim.rng.random() < 0.15
        for k in keys:
            self.futures[k].status = CANCELLED
            if k in self.sim.specs:
                self.sim.let_go.append(k)
            if self.sim.expect[k].scattered:
                self.sim.scatter_released.add(k)
            self.sim.cancelled.add(k)
        self._send([m.CancelKeys(keys, force)])
        self._race_resubmit()

    def act_retry(self) -> None:
        keys = self._pick([k for k, f in self.futures.items() if f.status == ERROR], 3)
        if keys:
            for k in keys:
                self.futures[k].status = PENDING
            self._send([m.RetryKeys(keys)])

    def act_fire_and_forget(self) -> None:
        keys = self._pick([k for k, f in self.futures.items() if f.status == PENDING], 2)
        if keys:
            self.sim.fired.extend(keys)
            for k in keys:
                self._let_go(k)
            self._send([m.FireAndForget(keys), m.ReleaseKeys(keys)])

    def act_adopt(self) -> None:
        """Hold a key another client holds (a future passed between clients)."""
        rng = self.sim.rng
        others = [k for c in self.sim.clients.values() if c is not self
                  for k in c.futures if k not in self.ever]
        if others:
            key = rng.choice(others)
            self.sim.adopted.add(key)
            self._hold(key, PENDING)
            self._send([m.WantKeys([key])])

    def act_scatter(self) -> None:
        sim = self.sim
        rng = sim.rng
        alive = sim.alive_workers()
        if not alive:
            return
        value: Any = rng.randint(0, 4) if rng.random() < 0.8 else sim_tasks.make_blob(rng.randint(0, 3))
        payload = dumps(value)
        if sim.shared_scatter_keys:  # as scatter(hash=True): equal data, equal key
            h = hashlib.blake2b(bytes(payload.data), digest_size=16)
            for b in payload.buffers:
                h.update(b)
            key = f"{type(value).__name__}-{h.hexdigest()}"
        else:  # as scatter(hash=False)
            key = f"{type(value).__name__}-{rng.getrandbits(128):032x}"
        if key in self.ever or key in self.scatters:
            return
        targets = rng.sample(alive, min(len(alive), rng.choice([1, 1, 2])))
        self.scatters[key] = {"value": value, "waiting": list(targets), "holders": []}
        for w in targets:
            sim.put_data(self.id, w, key, value, payload)

    def put_acked(self, key: str, worker: str, ok: bool) -> None:
        op = self.scatters[key]
        op["waiting"].remove(worker)
        if ok:
            op["holders"].append(worker)
        if op["waiting"]:
            return
        del self.scatters[key]
        if not self.connected or not op["holders"]:
            return  # nothing stored (or nobody left to tell)
        value = op["value"]
        self.sim.register(key, Expect(True, value, frozenset(), frozenset([key]), scattered=True),
                          "blob" if type(value) is bytearray else "int")
        self._hold(key, FINISHED)
        self._send([m.DataScattered(
            [m.ScatteredKey(key, op["holders"], sizeof(value), type(value).__name__)]
        )])

    # ------------------------------------------------------------------ from the scheduler

    def receive(self, msgs: list[Any]) -> None:
        for msg in msgs:
            t = type(msg)
            if t is m.TaskDone:
                f = self.futures.get(msg.key)
                if f is not None and f.status not in (CANCELLED, UNKNOWN):
                    f.status = FINISHED
                    if msg.value is not None:
                        self.sim.check_value(msg.key, loads(msg.value), f"inline value to {self.id}")
            elif t is m.TaskErred:
                f = self.futures.get(msg.key)
                if f is not None and f.status not in (CANCELLED, UNKNOWN):
                    f.status = ERROR
                    exc = loads_exception(msg.exception, msg.traceback, msg.text)
                    self.sim.check_error(msg.key, exc)
            elif t is m.TasksCancelled:
                for key in msg.keys:
                    f = self.futures.get(key)
                    if f is not None:
                        f.status = CANCELLED
            elif t is m.TasksLost:
                for key in msg.keys:
                    f = self.futures.get(key)
                    if f is not None and f.status not in (CANCELLED, UNKNOWN):
                        f.status = UNKNOWN if "does not know" in msg.reason else LOST
            elif t is not m.WorkersChanged and t is not m.ReleaseHandled:
                self.sim.fail(f"client {self.id} got an unexpected {t.__name__}")


def error_acceptable(sim: Simulation, key: str, exc: BaseException) -> bool:
    """May ``key`` end with ``exc``?  Beyond the errors its graph raises on
    purpose, some follow from what happened to the cluster."""
    exp = sim.expect[key]
    if describe(exc) in exp.errors:
        return True
    if isinstance(exc, KilledWorker):
        return exc.key in exp.ancestors and sim.kills.get(exc.key, 0) > sim.allowed_failures
    if isinstance(exc, FutureLost):
        return any(
            repr(k) in str(exc) and sim.expect[k].scattered
            and (k in sim.scatter_killed or k in sim.scatter_released)
            for k in exp.ancestors
        )
    if isinstance(exc, SerializationError):
        # an input that does not pickle is usable only where it was computed
        return any(repr(k) in str(exc) and sim.kinds[k] == "opaque" for k in exp.ancestors)
    if isinstance(exc, SchedulerError) and "does not know" in str(exc):
        # a dependency was cancelled (cancelling cascades to dependents the
        # client still holds), or adopted after its last holder let go
        return any(k in sim.cancelled for k in exp.ancestors) or any(
            repr(k) in str(exc) for k in exp.ancestors if k in sim.adopted
        )
    return False
