"""Heartbeats, scheduler side: noticing workers that stopped answering, and
telling workers that the scheduler still does.

A worker sends ``Heartbeat`` every ``worker.heartbeat-interval``; any
message from it counts.  Every ``scheduler.worker-check-interval`` the
scheduler sends each worker a ``Heartbeat`` of its own (the worker's proof
that the scheduler is alive: see ``shoal/worker/liveness.py``) and removes a
worker it has heard nothing from for ``scheduler.worker-ttl``: a stopped
process (SIGSTOP, a debugger), a partitioned host, a hung machine.  Removing
it is what a closed connection does: its running tasks go back to waiting,
results only it held are recomputed from their lineage, the other workers
drop their connections to it (``WorkersChanged``), and its connection is
closed.  Should it come back (SIGCONT, the partition heals), it finds that
connection closed and leaves; its nanny starts a fresh worker, which
registers as new.  Nothing it says over the old connection is heard.

The scheduler's own stalls are not the workers' fault: a scheduler busy for
longer than the check interval (a huge submission, a slow plugin) has not
read what its workers sent meanwhile, so the time it was blocked is not
counted as their silence (``SilenceClock``, pure).

A scheduler extension (see server.py); ``worker_restarted`` reports, as an
event, why a nanny restarted a worker (the new worker says so when it
registers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from shoal.errors import CommClosedError
from shoal.protocol import messages as m
from shoal.protocol.events import RESTART_TOPIC

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class WorkerSilent(CommClosedError):
    """Why a silent worker's connection was closed (its removal's reason)."""


class SilenceClock:
    """Who has been silent too long, forgiving the observer's own stalls.

    ``tick(now)`` is called every ``interval``; a tick later than that (by
    more than the interval, or half a second) means the observer was not
    running for that long (its loop was blocked), and that time is not
    counted as anyone's silence.  Only the stall is forgiven, so an
    observer that is merely slow still removes a silent peer, later.
    """

    def __init__(self, ttl: float, interval: float, now: float) -> None:
        if ttl <= 0:
            raise ValueError(f"a time-to-live must be positive, got {ttl}")
        self.ttl = ttl
        self.interval = interval
        self.last_tick = now
        self.stalls: deque[tuple[float, float]] = deque(maxlen=1000)  # (end, length)

    def tick(self, now: float) -> None:
        late = now - self.last_tick - self.interval
        if late > max(self.interval, 0.5):
            self.stalls.append((now, late))
        horizon = now - 10 * self.ttl
        while self.stalls and self.stalls[0][0] < horizon:
            self.stalls.popleft()
        self.last_tick = now

    def silent_for(self, last_heard: float, now: float) -> float:
        forgiven = sum(min(length, end - last_heard) for end, length in self.stalls if end > last_heard)
        return now - last_heard - forgiven

    def expired(self, last_heard: float, now: float) -> bool:
        return self.silent_for(last_heard, now) > self.ttl


class Liveness:
    def __init__(self, server: SchedulerServer, ttl: float, interval: float) -> None:
        self.server = server
        self.ttl = ttl
        self.interval = interval
        self.removed_silent = 0  # workers removed for silence, since the start

    async def run(self) -> None:
        server = self.server
        clock = SilenceClock(self.ttl, self.interval, time.monotonic())
        heartbeat = [m.Heartbeat()]
        while server.status == "running":
            await asyncio.sleep(self.interval)
            if server.state.flush_release_acks():  # to clients that heard nothing else
                server._schedule_flush()
            now = time.monotonic()
            clock.tick(now)
            for address, w in list(server.state.workers.items()):
                comm = server.worker_comms.get(address)
                if comm is None:
                    continue
                if clock.expired(w.last_seen, now):
                    silent = clock.silent_for(w.last_seen, now)
                    logger.warning("worker %s sent nothing for %.1f s (scheduler.worker-ttl is "
                                   "%.1f s): removing it", address, silent, self.ttl)
                    self.removed_silent += 1
                    # _on_worker_closed removes it, with this as the reason
                    comm.abort(WorkerSilent(f"worker {address} sent nothing for {silent:.1f} s"))
                    continue
                try:
                    comm.send(heartbeat)
                except CommClosedError:
                    pass

    # ------------------------------------------------------------------ nanny reports

    def worker_restarted(self, register: m.RegisterWorker) -> None:
        """A worker registered saying its nanny restarted it, and why."""
        event = {"action": "worker-restarted", "worker": register.address,
                 "name": str(register.name), "reason": register.restarted}
        logger.info("worker %s (%s) was restarted by its nanny: %s", register.address,
                       register.name, register.restarted)
        self.server.events.log_event([RESTART_TOPIC, "all", register.address], event)
