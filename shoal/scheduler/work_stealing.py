"""Work stealing, carried out: a scheduler extension.

Every ``scheduler.work-stealing-interval`` (while two or more workers are
connected and ``scheduler.work-stealing`` is on) it asks ``stealing.plan``
which tasks idle workers should take, and asks each victim to give them
back.  Data flow::

    plan --StealRequest(key, run_id)--> victim worker
    victim: not started? forget it --StealResponse(stolen)--> here
    stolen and still that run: processing -> waiting -> processing on the
        thief (``state.steal_targets`` tells placement where it goes)

A task the victim started meanwhile stays where it is; a task that finished,
moved or was released meanwhile is recognised by its run id and left alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.protocol import messages as m
from shoal.scheduler import stealing
from shoal.scheduler.records import PROCESSING, WAITING

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class WorkStealing:
    worker_messages = {m.StealResponse: "on_steal_response"}

    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.enabled = bool(config.get("scheduler.work-stealing"))
        self.interval = config.duration("scheduler.work-stealing-interval") or 0.1
        # key -> (run id asked for, victim address, thief address)
        self.asked: dict[str, tuple[int, str, str]] = {}
        self.stolen = 0  # tasks moved since start
        self._running = False

    def worker_joined(self, address: str) -> None:
        if self.enabled and not self._running and len(self.server.state.workers) > 1:
            self._running = True
            self.server._spawn(self._periodically())

    def worker_left(self, address: str) -> None:
        for key, (_, victim, thief) in list(self.asked.items()):
            if address in (victim, thief):
                del self.asked[key]

    async def _periodically(self) -> None:
        try:
            while self.server.status == "running":
                await asyncio.sleep(self.interval)
                self.balance()
        finally:
            self._running = False

    def balance(self) -> int:
        """Ask for the steals the policy plans now; how many were asked."""
        state = self.server.state
        steals = stealing.plan(state, self.asked)
        for ts, victim, thief in steals:
            self.asked[ts.key] = (ts.run_id, victim.address, thief.address)
            state.send_worker(victim, m.StealRequest(ts.key, ts.run_id))
        if steals:
            self.server._schedule_flush()
        return len(steals)

    def on_steal_response(self, address: str, msg: m.StealResponse) -> None:
        asked = self.asked.pop(msg.key, None)
        if asked is None or asked[0] != msg.run_id or not msg.stolen:
            return
        state = self.server.state
        ts = state.tasks.get(msg.key)
        victim = state.workers.get(address)
        thief = state.workers.get(asked[2])
        if ts is None or ts.state is not PROCESSING or ts.processing_on is not victim \
                or ts.run_id != msg.run_id:
            return  # moved, finished or released meanwhile: the victim's answer is stale
        state._begin(f"steal-{address}", time.monotonic())
        if thief is not None:
            state.steal_targets[ts] = thief
        try:
            state.transitions({ts: WAITING})  # the victim dropped it; placed again
        finally:
            state.steal_targets.pop(ts, None)
        state._finish()
        self.stolen += 1

    async def rpc_stealing_info(self, client_id: str) -> dict[str, Any]:
        return {"enabled": self.enabled, "interval": self.interval, "stolen": self.stolen,
                "in_flight": len(self.asked)}


__all__ = ["WorkStealing"]
