"""Client sessions that outlive a broken connection.

A client whose connection closes without saying goodbye (``ClientLeaving``)
is not forgotten at once: the scheduler keeps what it wants for
``scheduler.client-grace-period``.  A client that reconnects within it says
who it is (``ResumeClient`` with its ``Hello``), gets its old id back, and
sends ``ReconcileKeys``: every key it holds now.  Messages either way may
have been lost with the old connection, so the scheduler then

* releases the keys it kept for the client that the client no longer holds
  (a ``ReleaseKeys`` lost on the way);
* wants again the keys the client holds, reporting where each stands (a
  ``TaskDone`` lost on the way is sent again; a result released meanwhile
  is computed again);
* fails the keys it never heard of (a ``SubmitTasks`` lost on the way) with
  ``FutureLost``, saying to submit them again, rather than leaving their
  futures waiting forever.

Past the grace period the client's keys are released as if it had closed;
if it comes back later it gets a new id and its old futures fail
(shoal/client/reconnect.py).  A closing scheduler tells its clients
(``SchedulerClosing``) so that they do not try to reconnect.

A scheduler extension (see server.py).  The server asks it
``resumed_client(comm)`` during the handshake and ``client_disconnected``
when a client's connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.errors import FutureLost
from shoal.protocol import messages as m

if TYPE_CHECKING:
    from shoal.comm.core import Comm
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class ClientSessions:
    client_messages = {m.ReconcileKeys: "on_reconcile", m.ClientLeaving: "on_leaving"}

    def __init__(self, server: SchedulerServer, grace_period: float) -> None:
        self.server = server
        self.grace_period = grace_period
        # clients whose connection broke: id -> the timer that forgets them
        self.away: dict[str, asyncio.TimerHandle] = {}
        self.leaving: set[str] = set()  # said ClientLeaving: no grace period

    # ------------------------------------------------------------------ handshake

    @staticmethod
    def resume_request(comm: Comm) -> str | None:
        """The client id a connecting client asks to resume, if it sent
        ``ResumeClient`` with its ``Hello`` (taken off the comm's queue)."""
        pending = comm._pending
        if pending and pending[0] and type(pending[0][0]) is m.ResumeClient:
            batch = pending.popleft()
            if len(batch) > 1:
                pending.appendleft(batch[1:])
            return str(batch[0].client_id)
        return None

    def resume(self, client_id: str) -> bool:
        """Whether ``client_id`` may take its session up again: it is away
        within its grace period, or its old connection is still open here
        (half-open after a partition: that one is closed now)."""
        server = self.server
        if client_id not in server.state.clients or client_id in server.state.pseudo_clients:
            return False
        timer = self.away.pop(client_id, None)
        if timer is not None:
            timer.cancel()
        old = server.client_comms.pop(client_id, None)
        if old is not None:
            old.abort(None)  # its close handler sees it is no longer the client's comm
        # answers to releases sent on the old connection: the client counts
        # afresh from its resumption (client/reconnect.py)
        server.state.release_acks.pop(client_id, None)
        self.leaving.discard(client_id)
        logger.info("client %s reconnected", client_id)
        return True

    # ------------------------------------------------------------------ connection lost

    def client_disconnected(self, client_id: str) -> bool:
        """The client's connection closed: whether to forget it now (it said
        goodbye, or there is no grace period) rather than later."""
        if client_id in self.leaving or self.grace_period <= 0 or self.server.status != "running":
            self.leaving.discard(client_id)
            return True
        logger.info("client %s disconnected; keeping its futures for %.1f s", client_id,
                    self.grace_period)
        loop = asyncio.get_running_loop()
        self.away[client_id] = loop.call_later(self.grace_period, self._expired, client_id)
        return False

    def _expired(self, client_id: str) -> None:
        self.away.pop(client_id, None)
        if client_id in self.server.client_comms:
            return  # back meanwhile
        logger.warning("client %s did not come back within %.1f s "
                       "(scheduler.client-grace-period): releasing its futures", client_id,
                       self.grace_period)
        self.server._forget_client(client_id)

    async def closing(self) -> None:
        for timer in self.away.values():
            timer.cancel()
        self.away.clear()
        for comm in list(self.server.client_comms.values()):
            try:
                comm.send([m.SchedulerClosing("the scheduler is closing")])
            except OSError:
                pass

    # ------------------------------------------------------------------ messages

    def on_leaving(self, client_id: str, msg: m.ClientLeaving) -> None:
        self.leaving.add(client_id)

    def on_reconcile(self, client_id: str, msg: m.ReconcileKeys) -> None:
        reconcile(self.server.state, client_id, msg.keys, time.monotonic())


def reconcile(state: Any, client_id: str, keys: list[str], now: float) -> None:
    """Make what ``state`` keeps for the client the keys it holds (see the
    module's docstring)."""
    c = state.clients[client_id]
    state._begin(f"ReconcileKeys-{client_id}", now)
    held = set(keys)
    state.release_keys(c, [ts.key for ts in c.wants if ts.key not in held])
    known = [k for k in keys if k in state.tasks]
    state.want_keys(c, known, report=True)
    for key in keys:
        if key not in state.tasks:
            exc = FutureLost(f"the scheduler never received task {key!r}: the connection broke "
                             "while it was on its way; submit it again")
            state.send_client(client_id, m.TaskErred(key, *state.make_exception(exc)))
    state._finish()
