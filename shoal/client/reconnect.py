"""Reconnecting to the scheduler after an unexpected loss of the connection.

A client whose scheduler connection closes without the scheduler saying it
is closing (``SchedulerClosing``) keeps its futures and tries to connect
again, with a back-off (0.05 s doubling up to 2 s), for
``client.reconnect-timeout``.  Meanwhile submissions and releases wait in
the client's outgoing queue and requests wait for the connection; requests
that were on their way when it broke fail with ``CommClosedError`` (their
answers are lost with it).  What was written to the broken connection may
never have arrived: the client keeps its last 16 submission messages
(``ClientCore._resend``, ``shoal/client/resend.py``: a task with large
arguments leaves it once released) and sends them again first; the scheduler takes a
submission of a key it knows as a request for that key's state.

On reconnecting the client sends ``ResumeClient`` with its id, and the
scheduler, if it kept the client (``scheduler.client-grace-period``), gives
the same id back.  The client then sends what waited, then
``ReconcileKeys``: every key it holds, so that the scheduler releases what
it no longer holds and reports again where each held key stands
(shoal/scheduler/client_sessions.py); results that finished while it was
away arrive then.  Its event subscriptions are renewed.

If the scheduler forgot the client (away too long, or a new scheduler at
the same address), the client goes on under a new id, and its old futures
fail with ``FutureLost`` saying so.  If no connection can be made in time,
the client closes, as it did before reconnecting existed.

Called by ``ClientCore`` (``shoal/client/core.py``) when its connection
closes, and by ``_request`` while a reconnection is under way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.client.future import CANCELLED
from shoal.errors import CommClosedError, FutureLost
from shoal.protocol import messages as m

if TYPE_CHECKING:
    from shoal.client.core import ClientCore

logger = logging.getLogger("shoal.client")

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


def reconnect_timeout() -> float:
    from shoal import config

    return config.duration("client.reconnect-timeout") or 0.0


def connection_lost(client: ClientCore, exc: BaseException | None) -> bool:
    """The scheduler connection closed while the client runs: start
    reconnecting and return True, or return False (the client closes)."""
    timeout = client._reconnect_timeout
    if timeout <= 0 or client._scheduler_closing or client._reconnecting is not None:
        return False
    logger.warning("lost the connection to the scheduler at %s (%s); reconnecting for up to "
                   "%.0f s", client.scheduler_address, exc or "closed", timeout)
    assert client.loop is not None
    client._reconnecting = client.loop.create_future()
    # what was asked on the old connection will not be answered
    err = CommClosedError(f"the connection to the scheduler broke: {exc or 'closed'}")
    for fut in list(client._requests.values()):
        if not fut.done():
            fut.set_exception(err)
    client._spawn(_reconnect(client, time.monotonic() + timeout, exc))
    return True


async def wait_reconnected(client: ClientCore) -> None:
    """Wait for a reconnection under way; ``CommClosedError`` if it fails."""
    waiting = client._reconnecting
    if waiting is not None:
        await asyncio.shield(waiting)


async def _reconnect(client: ClientCore, deadline: float, cause: BaseException | None) -> None:
    from shoal.comm.core import connect_and_greet

    delay = _FIRST_DELAY
    attempt = 0
    while client.status == "running":
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            comm, welcome = await connect_and_greet(
                client.scheduler_address, "client", client.name,
                max(0.1, min(client.timeout, remaining)), extra=[m.ResumeClient(client.id)],
                security=client.security)
        except (OSError, TimeoutError) as e:
            if time.monotonic() + delay >= deadline:
                _give_up(client, f"could not reconnect within {client._reconnect_timeout:.0f} s "
                                 f"({attempt} attempts; last: {e}); lost the connection: "
                                 f"{cause or 'closed'}")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
            continue
        if client.status != "running":
            comm.abort(None)
            return
        _resume(client, comm, welcome)
        return


def _resume(client: ClientCore, comm: Any, welcome: Any) -> None:
    from shoal.client import events

    resumed = bool(welcome.info.get("resumed"))
    old_id = client.id
    with client._lock:
        client.scheduler_comm = comm
        client._direct_send = comm.threadsafe_send
        client.id = welcome.id
        client._workers = list(welcome.info.get("workers", []))
        if not resumed:
            _fail_forgotten(client, old_id)
        held = [k for k, st in client.futures.items() if st.status != CANCELLED]
        _count_releases_afresh(client)
        comm.start(client._on_messages, client._on_closed)
        if resumed and client._resend:
            # the last submissions, in case the broken connection lost them
            client._outgoing[:0] = client._resend.to_resend()
        client._flush_locked()  # what waited, before the reconciliation
        for topic in events.event_handlers(client):
            client._outgoing.append(m.SubscribeTopic(topic))
        client._outgoing.append(m.ReconcileKeys(held))
        client._flush_locked()
    waiting, client._reconnecting = client._reconnecting, None
    if waiting is not None and not waiting.done():
        waiting.set_result(None)
    client._spawn(client._heartbeat())
    if resumed:
        logger.warning("reconnected to the scheduler at %s; %d futures kept",
                       client.scheduler_address, len(held))
    else:
        logger.warning("reconnected to the scheduler at %s, which had forgotten this client "
                       "(%s): its futures failed; the client goes on as %s",
                       client.scheduler_address, old_id, client.id)


def _count_releases_afresh(client: ClientCore) -> None:
    """With the lock held: the answers (``ReleaseHandled``) to releases sent
    on the broken connection will never come (the scheduler drops them on
    resuming: shoal/client/releases.py), and the news about those keys on it
    is lost too; only the releases still queued here will be answered."""
    queued = [msg for msg in client._outgoing if type(msg) is m.ReleaseKeys]
    client._release_msgs = queued
    releasing: dict[str, int] = {}
    for msg in queued:
        for key in msg.keys:
            releasing[key] = releasing.get(key, 0) + 1
    client._releasing = releasing


def _fail_forgotten(client: ClientCore, old_id: str) -> None:
    """With the lock held: the scheduler released everything of ``old_id``."""
    err = FutureLost(f"the scheduler forgot client {old_id} while its connection was broken "
                     "(longer than scheduler.client-grace-period): this future's task is gone")
    for st in client.futures.values():
        if not st.done():
            st.status = CANCELLED
            st.exception = err
            client._wake(st)
        else:
            st.status = CANCELLED  # a finished result was released too
            st.value = None
            st.exception = err
    client._outgoing = [msg for msg in client._outgoing if type(msg) is not m.ReleaseKeys]


def _give_up(client: ClientCore, reason: str) -> None:
    logger.error("%s", reason)
    waiting, client._reconnecting = client._reconnecting, None
    if waiting is not None and not waiting.done():
        waiting.set_exception(CommClosedError(reason))
        waiting.exception()  # retrieved: requests waiting on it re-raise it
    client._connection_gone(reason)
