"""The simulated workers of ``shoal.testing.simulation``: a ``WorkerState``
plus what the worker server and executor would do with its instructions,
on real values.

Rules:
1. Mirror ``shoal.worker.server`` and ``shoal.worker.executor``: the same
   serialize calls for arguments, results, exceptions and fetched data, the
   same decisions (store a result only if the run was not cancelled, inline a
   small result, report data that does not pickle as unusable).
2. A task's function is called when it starts, as a thread would; its
   outcome arrives after a random time, unless the worker dies first.
3. Everything random comes from the simulation's generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.errors import SerializationError
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps, dumps_exception, loads, loads_function, loads_task_args
from shoal.testing.sim_client import describe
from shoal.worker import state as ws
from shoal.worker.sizeof import sizeof

if TYPE_CHECKING:
    from shoal.testing.simulation import Simulation

SCHEDULER = "scheduler"


def short(key: str) -> str:
    name, _, token = key.rpartition("-")
    return f"{name}-{token[:6]}" if name else key


class SimWorker:
    """A worker: its state machine plus the values a real worker would hold."""

    def __init__(self, sim: Simulation, address: str, nthreads: int) -> None:
        self.sim = sim
        self.address = address
        self.nthreads = nthreads
        self.state = ws.WorkerState(address, nthreads, validate=True)
        self.data: dict[str, Any] = {}
        self.functions: dict[bytes, Any] = {}
        self.alive = True

    def receive(self, msgs: list[Any]) -> None:
        """A batch from the scheduler (``WorkerServer._on_scheduler_messages``)."""
        for msg in msgs:
            if type(msg) is m.DefineFunctions:
                for f in msg.functions:
                    self.functions.setdefault(f.id, f.blob)
        unhandled = self.state.handle_scheduler(msgs)
        if any(type(x) is not m.DefineFunctions for x in unhandled):
            self.sim.fail(f"{self.address} did not handle {[type(x).__name__ for x in unhandled]}")
        self.flush()

    def flush(self) -> None:
        """Carry out the state machine's instructions; send its messages."""
        sim = self.sim
        msgs, instructions = self.state.take()
        for ins in instructions:
            t = type(ins)
            if t is ws.Execute:
                self.execute(ins.key)
            elif t is ws.GatherDep:
                sim.log(f"{self.address} fetches {[short(k) for k in ins.keys]} from {ins.worker}")
                sim.count("fetches")
                sim.push(self.address, ins.worker, "data", "get-data", ins.keys)
            elif t is ws.StoreInline:
                self.data[ins.key] = loads(ins.value)
            elif t is ws.DropData:
                for key in ins.keys:
                    self.data.pop(key, None)
            else:
                sim.fail(f"unknown instruction {ins!r}")
        if msgs:
            sim.push(self.address, SCHEDULER, "ctl", "msgs", msgs)

    def execute(self, key: str) -> None:
        """Start a task: resolve its arguments and call it now, as a thread
        of a real worker would; the outcome arrives after a random time."""
        sim = self.sim
        ts = self.state.tasks[key]
        func_id, payload = ts.func, ts.args
        if func_id is None or func_id not in self.functions or payload is None:
            sim.fail(f"{self.address} was told to run {key!r} without its function or arguments")
            return
        func = self.functions[func_id]
        if type(func) is bytes:
            func = self.functions[func_id] = loads_function(func)
        try:
            args, kwargs = loads_task_args(payload, self.data)
            value = func(*args, **kwargs)
        except Exception as e:
            outcome: tuple[Any, ...] = ("err", *dumps_exception(e))
            sim.log(f"{self.address} runs {short(key)}: raises {describe(e)}")
        else:
            nbytes = sizeof(value)
            inline = None
            if nbytes <= 4 * sim.inline_limit:  # as executor.py decides
                try:
                    result = dumps(value)
                except SerializationError:
                    result = None  # stays on the worker
                if result is not None and result.nbytes <= sim.inline_limit:
                    inline = result
            outcome = ("ok", value, nbytes, type(value).__name__, inline)
            sim.log(f"{self.address} runs {short(key)}: returns {str(value)[:20]}")
        sim.count("executions")
        sim.timer(sim.rng.randint(1, sim.task_time), self.address, (key, sim.now, outcome))

    def done(self, key: str, started: int, outcome: tuple[Any, ...]) -> None:
        """A run ended (``WorkerServer._on_results``)."""
        duration = float(self.sim.now - started)
        ts = self.state.tasks.get(key)
        self.sim.log(f"{self.address} finished {short(key)} ({outcome[0]}, {ts})")
        if outcome[0] == "ok":
            _, value, nbytes, type_name, inline = outcome
            if ts is not None and ts.state is ws.EXECUTING:
                self.data[key] = value
            self.state.execute_done(key, nbytes, type_name, duration, inline)
        else:
            _, exc, tb, text = outcome
            self.state.execute_failed(key, exc, tb, text, duration)
        self.flush()

    def get_data(self, keys: list[str]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
        """A peer asks for these keys (``WorkerServer._get_data``)."""
        data, missing, errors = {}, [], {}
        for key in keys:
            if key not in self.data:
                missing.append(key)
                continue
            try:
                data[key] = dumps(self.data[key])
            except SerializationError as e:
                errors[key] = str(e)
        return data, missing, errors

    def got_data(self, peer: str, reply: tuple[dict[str, Any], list[str], dict[str, str]] | None) -> None:
        """The answer to a fetch, or ``None`` if the peer could not be reached
        (``WorkerServer._gather_dep``)."""
        sim = self.sim
        if reply is None:
            sim.log(f"{self.address} could not reach {peer}")
            sim.count("fetch_failures")
            self.state.gather_failed(peer)
            self.flush()
            return
        data, missing, errors = reply
        sim.log(f"{self.address} got {[short(k) for k in data]} missing {[short(k) for k in missing]} "
                f"unusable {[short(k) for k in errors]} from {peer}")
        if missing:
            sim.count("fetch_missing")
        for key, message in errors.items():
            sim.count("fetch_unusable")
            exc, tb, text = dumps_exception(
                SerializationError(f"could not fetch {key!r} from {peer}: {message}")
            )
            self.state.dependency_unusable(key, exc, tb, text)
        received = {}
        for key, payload in data.items():
            if self.state.wants_data(key):
                self.data[key] = loads(payload)
                received[key] = self.state.tasks[key].nbytes or payload.nbytes
        self.state.gather_done(peer, received, missing)
        self.flush()

    def put_data(self, key: str, value: Any, payload: Any) -> None:
        """A client scatters data here (``WorkerServer._put_data``)."""
        self.sim.log(f"{self.address} stores scattered {short(key)}")
        self.data[key] = loads(payload)
        self.state.data_put({key: sizeof(value)}, {key: type(value).__name__})
        self.flush()
