"""What the client does with the scheduler's messages: results, errors,
cancellations and losses land in the futures' states (on the client's event
loop thread, under the client's lock), and waiters are woken.  Events of
subscribed topics go to their handlers (shoal/client/events.py) after the
lock is released.  News about a key whose release the scheduler has not
answered yet is about the futures released, not the current ones, and is
dropped (see releases.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shoal.client import pushed, releases
from shoal.client.future import CANCELLED, ERROR, LOST
from shoal.errors import FutureCancelledError
from shoal.protocol import messages as m

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

logger = logging.getLogger("shoal.client")


def apply(client: Client, msgs: list[Any]) -> None:
    futures = client.futures
    releasing = client._releasing  # news about these may be about released futures
    events = None
    with client._lock:
        for msg in msgs:
            t = type(msg)
            if client._unconfirmed:
                pushed.confirm_told(client, msg, t)
            if t is m.TaskDone:
                st = futures.get(msg.key)
                if st is not None and st.status != CANCELLED and msg.key not in releasing:
                    st.finish(msg.type_name, msg.nbytes, msg.workers, msg.value)
                    if st.waiters:
                        client._wake(st)
                        if msg.value is not None and msg.workers:
                            # a caller waits on small results from there
                            pushed.maybe_subscribe(client, msg.workers[0])
            elif t is m.TaskErred:
                st = futures.get(msg.key)
                if st is not None and st.status != CANCELLED and msg.key not in releasing:
                    st.status = ERROR
                    st.exception = (msg.exception, msg.traceback, msg.text)
                    if st.waiters:
                        client._wake(st)
            elif t is m.TasksCancelled:
                cancelling = client._cancelling
                for key in msg.keys:
                    n = cancelling.get(key, 0)
                    if n:  # the answer to our own cancel: the state says so already
                        if n == 1:
                            del cancelling[key]
                        else:
                            cancelling[key] = n - 1
                        continue
                    st = futures.get(key)
                    if st is not None and st.status != CANCELLED and key not in releasing:
                        # finished ones too: the scheduler dropped our claim
                        st.status = CANCELLED
                        st.value = None
                        # why: another client's cancel(force=True, reason=...), a restart...
                        st.exception = FutureCancelledError(key, msg.reason or None, msg.msg or None)
                        client._wake(st)
            elif t is m.TasksLost:
                for key in msg.keys:
                    st = futures.get(key)
                    if st is not None and st.status != CANCELLED and key not in releasing:
                        st.status = LOST
                        st.value = None
                        st.workers = ()
            elif t is m.SchedulerClosing:
                client._scheduler_closing = True  # its connection closing is no loss
            elif t is m.ReleaseHandled:
                releases.handled(client, msg.count)
            elif t is m.WorkersChanged:
                client._workers = [w for w in client._workers if w not in msg.removed] + msg.added
                for address in msg.removed:
                    # a gather from it fails now (and asks the scheduler again),
                    # not never: it may be stopped or cut off rather than dead
                    client.pool.drop(address, f"worker {address} left the cluster")
            elif t is m.Response:
                fut = client._requests.pop(msg.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif t is m.EventLogged:
                if events is None:
                    events = [msg]
                else:
                    events.append(msg)
            else:
                logger.warning("unexpected %s from the scheduler", t.__name__)
    if events is not None:
        from shoal.client import events as client_events

        client_events.deliver(client, events)

