"""The checks of ``shoal.testing.simulation``: after every step, at
quiescence (nothing in flight), and once every client has let go.

A check that fails calls ``sim.fail``, which raises ``SimulationFailure``
with the seed and the trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.protocol.serialize import loads
from shoal.scheduler.invariants import check_invariants
from shoal.scheduler.records import ERRED, MEMORY, RELEASED
from shoal.scheduler.state import FIRE_AND_FORGET
from shoal.testing.sim_client import CANCELLED, ERROR, FINISHED, UNKNOWN
from shoal.worker import state as ws

if TYPE_CHECKING:
    from shoal.testing.simulation import Simulation


def check_step(sim: Simulation) -> None:
    """After every step: every machine's invariants, and each worker's
    values match what its state machine says it holds."""
    check_invariants(sim.scheduler)
    for w in sim.workers.values():
        if not w.alive:
            continue
        w.state.check_invariants()
        in_memory = [k for k, t in w.state.tasks.items() if t.state is ws.MEMORY]
        if len(in_memory) != len(w.data) or any(k not in w.data for k in in_memory):
            sim.fail(f"{w.address} holds values {sorted(w.data)} but its state has {sorted(in_memory)}")

def check_quiescent(sim: Simulation) -> None:
    """Nothing in flight: every held future has its final, correct state,
    and the scheduler and the workers agree on who holds what."""
    sched = sim.scheduler
    for c in sim.clients.values():
        wanted = sorted(ts.key for ts in sched.clients[c.id].wants)
        held = sorted(k for k, f in c.futures.items() if f.status not in (CANCELLED, UNKNOWN))
        if wanted != held:
            sim.fail(f"{c.id}: the scheduler thinks it wants {wanted}, it holds {held}")
        for key, f in c.futures.items():
            if f.status in (CANCELLED, UNKNOWN):
                continue
            ts = sched.tasks[key]
            if f.status == FINISHED and ts.state is MEMORY:
                check_stored_value(sim, key)
            elif f.status == ERROR and ts.state is ERRED:
                sim.count("final_errors")
            else:
                sim.fail(f"{c.id}: {key!r} is {f.status} at quiescence; the scheduler has it "
                          f"{ts.state.value}\nstory: {sched.story(key)[-10:]}")
    faf = sched.clients[FIRE_AND_FORGET]
    if faf.wants:
        sim.fail(f"fire-and-forget tasks never finished: {sorted(ts.key for ts in faf.wants)}")
    for ts in sched.tasks.values():
        if ts.state not in (MEMORY, ERRED, RELEASED):
            sim.fail(f"{ts.key!r} stuck in {ts.state.value} at quiescence\nstory: {sched.story(ts.key)[-10:]}")
    if sorted(sched.workers) != sorted(sim.alive_workers()):
        sim.fail(f"the scheduler knows workers {sorted(sched.workers)}, alive are {sim.alive_workers()}")
    for address, wr in sched.workers.items():
        w = sim.workers[address]
        expected = sorted(ts.key for ts in wr.has_what)
        held = sorted(w.state.tasks)
        if expected != held or wr.processing or w.state.executing or w.state.in_flight:
            sim.fail(f"{address} holds {held}, the scheduler thinks {expected} "
                      f"(processing {list(wr.processing)}, executing {sorted(w.state.executing)})")
        if wr.stopping:  # every run taken back has ended: its slot must be free again
            sim.fail(f"the scheduler still counts runs {sorted(wr.stopping)} taken back from "
                      f"{address} as holding threads")

def check_stored_value(sim: Simulation, key: str) -> None:
    ts = sim.scheduler.tasks[key]
    if ts.value is not None:
        sim.check_value(key, loads(ts.value), "scheduler's inline copy")
    for wr in ts.who_has:
        w = sim.workers[wr.address]
        if key not in w.data:
            sim.fail(f"{key!r}: the scheduler says {wr.address} holds it; it does not")
        sim.check_value(key, w.data[key], f"stored on {wr.address}")

def check_empty(sim: Simulation) -> None:
    """Every client let go: nothing may be left anywhere."""
    sched = sim.scheduler
    if sched.tasks:
        left = [(k, ts.state.value) for k, ts in sched.tasks.items()][:10]
        sim.fail(f"the scheduler still holds {len(sched.tasks)} tasks after every client let go: {left}")
    if sched.unrunnable or any(e[2].state.value == "queued" for e in sched.queued):
        sim.fail("the scheduler still has queued or unrunnable tasks")
    for address, wr in sched.workers.items():
        if wr.has_what or wr.processing or wr.nbytes or abs(wr.occupancy) > 1e-9:
            sim.fail(f"the scheduler's record of {address} is not empty: has_what="
                      f"{list(wr.has_what)} processing={list(wr.processing)} nbytes={wr.nbytes} "
                      f"occupancy={wr.occupancy}")
    for w in sim.workers.values():
        if w.alive and (w.state.tasks or w.data or w.state.nbytes):
            sim.fail(f"{w.address} leaks {sorted(w.state.tasks)} / {sorted(w.data)}")
