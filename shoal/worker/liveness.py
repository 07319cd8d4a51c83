"""Heartbeats, worker side: telling the scheduler this worker is alive, and
noticing a scheduler that stopped answering.

Every ``worker.heartbeat-interval`` the worker sends ``Heartbeat`` with its
metrics.  The scheduler sends one back every
``scheduler.worker-check-interval`` (shoal/scheduler/liveness.py); any
message from it counts.  A worker that has heard nothing for
``worker.scheduler-ttl`` (its own stalls forgiven, as the scheduler forgives
its own) gives its scheduler up: a stopped scheduler, or a partition
between the two.  So does a worker whose scheduler connection closes while
it runs.

Giving up means leaving, not reconnecting: the scheduler will by then have
removed this worker and rescheduled its work (or will, when it hears
nothing from it), so what this process holds is stale.  It closes, and
exits with ``LOST_SCHEDULER_EXIT_CODE`` when a nanny watches it, which
starts a fresh worker that registers as new once the scheduler is
reachable (shoal/cluster/process.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from shoal.errors import CommClosedError
from shoal.protocol import messages as m
from shoal.scheduler.liveness import SilenceClock

if TYPE_CHECKING:
    from shoal.worker.server import WorkerServer


async def heartbeat(worker: WorkerServer, scheduler_ttl: float) -> None:
    """Report metrics every heartbeat interval; give the scheduler up after
    ``scheduler_ttl`` seconds without a word from it."""
    import psutil

    proc = psutil.Process()
    proc.cpu_percent()  # the first reading starts the measurement
    interval = worker.heartbeat_interval
    clock = SilenceClock(scheduler_ttl, interval, time.monotonic())
    while worker.status == "running":
        await asyncio.sleep(interval)
        now = time.monotonic()
        clock.tick(now)
        if clock.expired(worker.last_heard, now):
            silent = clock.silent_for(worker.last_heard, now)
            worker._lose_scheduler(f"the scheduler sent nothing for {silent:.1f} s "
                                  f"(worker.scheduler-ttl is {scheduler_ttl:.1f} s)")
            return
        try:
            worker.scheduler.send([m.Heartbeat(_metrics(worker, proc))])
        except (CommClosedError, OSError):
            return


def _metrics(worker: WorkerServer, proc: Any) -> dict[str, Any]:
    return {
        **worker._metrics(),
        **worker.memory.metrics(),  # process memory, spilled bytes, paused
        "cpu": proc.cpu_percent(),
        "num_fds": proc.num_fds() if hasattr(proc, "num_fds") else 0,
        "executing": len(worker.state.executing),
        "ready": len(worker.state.ready),
        "nbytes": worker.state.nbytes,
        **worker.observability.heartbeat_metrics(),  # started, bytes fetched (the dashboard)
    }
