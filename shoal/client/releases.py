"""Releases in flight: telling a key's released futures from its next ones.

A client that drops its last future for a key sends ``ReleaseKeys``.  Should
it want the key again soon (the same pure call submitted anew), news about
the released futures may still be on its way: a ``TaskDone`` the scheduler
sent before it read the release, or a result a worker pushed.  Applied to
the new future, such news finished it while its task ran again (the results
of repeated calls then came back from ``as_completed`` in submission order).

The scheduler answers every ``ReleaseKeys`` with ``ReleaseHandled``, in order
with everything else it sends this client.  Until that answer, news about a
released key is about the released futures and is dropped.  The answer
travels ahead of the client's next news (or alone, every
``scheduler.worker-check-interval``, to a client that hears nothing else):
an answer of its own per release cost ~7% of a ``submit(...).result()``
round trip (a message more to wake up for).

Data flow::

    _release_key --released()--> ReleaseKeys (queued: sent()) --> scheduler
    scheduler --news about the old futures ... ReleaseHandled(n)--> inbox: handled()

Rules: everything here runs with the client's lock held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client


def released(client: Client, key: str) -> None:
    """``key``'s last future went; its ``ReleaseKeys`` is being queued."""
    releasing = client._releasing
    releasing[key] = releasing.get(key, 0) + 1


def sent(client: Client, msg: Any) -> None:
    """A ``ReleaseKeys`` message was queued for the scheduler (more keys may
    join it until it leaves): the scheduler will answer it."""
    client._release_msgs.append(msg)


def handled(client: Client, count: int) -> None:
    """The scheduler answered the ``count`` oldest ``ReleaseKeys``: news
    about their keys is about their next futures from now on."""
    msgs = client._release_msgs
    done, client._release_msgs = msgs[:count], msgs[count:]
    releasing = client._releasing
    for msg in done:
        for key in msg.keys:
            n = releasing.get(key)
            if n is None:
                continue  # an intermediate key the client never held
            if n <= 1:
                del releasing[key]
            else:
                releasing[key] = n - 1
