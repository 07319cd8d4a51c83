"""Results straight from the worker: a shortcut for callers that wait.

The normal path of a result is worker -> scheduler -> client: two network
hops and a scheduler step after the task ends.  A caller blocked in
``future.result()`` on a lone task (the submit-and-wait pattern) pays all of
it.  So a client that waits on a small result from a worker *subscribes* to
that worker (``SubscribeResults`` on its data connection, which gather
already uses); from then on, when the scheduler hands that worker a task that
this one client wants and that is all the worker has to do, the worker's task
thread sends the small result to the client itself (``ResultPushed``) the
moment it is computed, before reporting it through its event loop.

The scheduler's ``TaskDone`` still follows and stays the authority: a
pushed result only finishes a future that is still pending, and a lost or
refused push changes nothing but the time the caller waits.  Subscriptions
are made on the event loop, at most ``MAX_SUBSCRIPTIONS`` per client, and
dropped with their connection.

Until that ``TaskDone`` comes, the scheduler does not know what the caller
already holds as finished; the key stays *unconfirmed*, and a request to the
scheduler first waits for it (``scheduler_knows``), so that its answers
(``who_has``, task states...) agree with the caller's futures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from shoal.client.future import PENDING
from shoal.protocol import messages as m

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

logger = logging.getLogger("shoal.client")

#: workers a client subscribes to (the ones it last waited on, first come)
MAX_SUBSCRIPTIONS = 32  # the default of client.max-push-subscriptions


def maybe_subscribe(client: Client, worker: str) -> None:
    """On the loop: subscribe to ``worker`` once (a worker that went away or
    refused is not asked again: workers come back at new addresses)."""
    subs = client._subscriptions
    if worker in subs or not worker.startswith("tcp://") or client.status != "running":
        return
    if len(subs) >= MAX_SUBSCRIPTIONS:
        for gone in [w for w, conn in subs.items() if conn is not None and conn.comm.closed]:
            del subs[gone]
        if len(subs) >= MAX_SUBSCRIPTIONS:
            return
    subs[worker] = None
    task = client.loop.create_task(_subscribe(client, worker))  # type: ignore[union-attr]
    client._background.add(task)
    task.add_done_callback(client._background.discard)


async def _subscribe(client: Client, worker: str) -> None:
    try:
        conn = await client.pool.connection(worker)
        conn.on_unsolicited = lambda msg: on_pushed(client, msg)
        conn.comm.send([m.SubscribeResults(client.id)])
    except Exception as e:  # the worker left, or the pool closed: results take the long way
        logger.debug("could not subscribe to results from %s: %s", worker, e)
        return  # stays marked (None): not asked again
    client._subscriptions[worker] = conn


def on_pushed(client: Client, msg: Any) -> None:
    """On the loop: a worker sent a result ahead of the scheduler."""
    if type(msg) is not m.ResultPushed:
        logger.warning("unexpected %s on a data connection", type(msg).__name__)
        return
    with client._lock:
        st = client.futures.get(msg.key)
        if st is None or st.status != PENDING or msg.key in client._releasing:
            return  # released (perhaps a run for released futures), cancelled or already told
        st.finish(msg.type_name, msg.nbytes, [msg.worker], msg.value)
        client._pushed += 1
        client._unconfirmed.add(msg.key)
        if st.waiters:
            client._wake(st)


def confirm(client: Client, key: str, on_loop: bool = True) -> None:
    """With the client lock held: the scheduler told the client about ``key``
    (or the client released it), so it knows whatever a push told us."""
    unconfirmed = client._unconfirmed
    unconfirmed.discard(key)
    event = client._confirmed
    if not unconfirmed and event is not None and client.loop is not None:
        if on_loop:
            event.set()
        else:
            try:
                client.loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed
                pass


def confirm_told(client: Client, msg: Any, t: type) -> None:
    """On the loop: the keys that scheduler message ``msg`` (of type ``t``)
    speaks of are confirmed."""
    if t is m.TaskDone or t is m.TaskErred:
        confirm(client, msg.key)
    elif t is m.TasksCancelled or t is m.TasksLost:
        for key in msg.keys:
            confirm(client, key)


async def scheduler_knows(client: Client, timeout: float = 2.0) -> None:
    """On the loop, before asking the scheduler anything: wait (at most
    ``timeout`` seconds) until no pushed result is unconfirmed."""
    loop = client.loop
    assert loop is not None
    deadline = loop.time() + timeout
    while client._unconfirmed:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return  # stays best effort: the answer may lag behind by a result
        event = client._confirmed = asyncio.Event()
        if not client._unconfirmed:
            return
        try:
            await asyncio.wait_for(event.wait(), remaining)
        except asyncio.TimeoutError:
            return
