"""Stay awake for a moment after a message: the busy-poll window.

A hop between two processes costs more when the receiver sleeps: its thread
blocks in ``epoll_wait`` (or on a futex), the CPU it ran on halts, and the
sender's wake-up has to bring that CPU back first (an inter-processor
interrupt; on a virtual machine an exit to the hypervisor as well).  Measured
on the 2-vCPU VM this was developed on, a blocking socket ping-pong between
two processes takes 67 µs per round trip when the receiver sleeps and 22 µs
when it polls; submit→result, which is three such hops and two hand-offs
between threads, went from ~560 to ~390 µs.

So after a message arrives, an event loop keeps polling for a short window
(setting ``comm.busy-poll``, 300 µs by default) instead of going to sleep: it queues a
callback that re-queues itself, so the loop's next wait has a zero timeout,
and every turn gives the CPU away (``sched_yield``) so that any other runnable
thread or process goes first.  A thread that waits for a result does the same
before it blocks (``spin_until``).  Replies within the window are picked up
without a wake-up; after it, everything sleeps as before.  The price is CPU
time for at most one window after each burst of messages, taken only when
nothing else wants the CPU, and it backs off where windows catch nothing
(``Backoff``).  ``comm.busy-poll: 0`` (or ``SHOAL_POLL_US=0``) turns it off.

A worker's loop does not poll after messages from the scheduler
(``Comm.keeps_loop_polling``): the tasks they bring run on its threads, which
need the GIL a polling loop would take, and it bought nothing (submit->result
431 µs with workers polling, 377 µs without, alternating runs).  After
clients' and peers' messages (actor calls, data requests) it does: an actor
call round trip went from 275-377 to 136-327 µs, four alternating runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any


def configured_window() -> float:
    """The window the configuration asks for (``comm.busy-poll``), in seconds."""
    from shoal import config

    return max(0.0, config.duration("comm.busy-poll") or 0.0)


#: seconds a loop (or a waiting thread) keeps polling after activity; 0:
#: never.  The default until ``configure()`` applies the configuration.
WINDOW = 300e-6


def configure() -> None:
    """Apply this process's configuration (when a client or server starts)."""
    set_window(configured_window())

_yield: Callable[[], Any] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))
_now = time.perf_counter


#: after n windows in a row that caught nothing, skip the next 2**n - 1 chances
MAX_BACKOFF = 6


def set_window(seconds: float) -> None:
    """This process polls for ``seconds`` after activity from now on (0: never)."""
    global WINDOW
    WINDOW = max(0.0, seconds)


class Backoff:
    """Polls only where they pay: a window that caught nothing makes the next
    chances be skipped, twice as many after each further miss (up to
    ``2**MAX_BACKOFF - 1``); one caught reply ends the back-off.  Sparse
    traffic (a cluster starting, heartbeats) then costs almost no polling
    CPU, which matters where every core is busy: a polling process also keeps
    its CPU from going idle, and an idle CPU is where the kernel moves
    waiting work."""

    __slots__ = ("misses", "skip")

    def __init__(self) -> None:
        self.misses = 0
        self.skip = 0

    def should_poll(self) -> bool:
        if self.skip:
            self.skip -= 1
            return False
        return True

    def caught(self) -> None:
        self.misses = self.skip = 0

    def missed(self) -> None:
        self.misses = min(self.misses + 1, MAX_BACKOFF)
        self.skip = (1 << self.misses) - 1


class LoopPoller:
    """Keeps one event loop polling for ``window`` seconds after ``touch()``.

    Only ever used from its loop's thread."""

    __slots__ = ("active", "backoff", "caught", "last", "loop", "window")

    def __init__(self, loop: Any, window: float) -> None:
        self.loop = loop
        self.window = window
        self.last = 0.0
        self.active = False  # a _turn callback is queued
        self.caught = False  # a message came while polling
        self.backoff = Backoff()

    def touch(self) -> None:
        self.last = _now()
        if self.active:
            self.caught = True
        elif self.window > 0 and self.backoff.should_poll():
            self.active = True
            self.caught = False
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        if _now() - self.last > self.window or self.loop.is_closed():
            self.active = False
            if self.caught:
                self.backoff.caught()
            else:
                self.backoff.missed()
            return
        _yield()
        self.loop.call_soon(self._turn)


_local = threading.local()


def touch(loop: Any) -> None:
    """Note activity on ``loop`` (the caller runs on it): keep it polling."""
    if not WINDOW:
        return
    poller = getattr(_local, "poller", None)
    if poller is None or poller.loop is not loop or poller.window != WINDOW:
        poller = _local.poller = LoopPoller(loop, WINDOW)
    poller.touch()


_thread_backoff = Backoff()  # shared by a process's waiting threads (a hint, no lock)


def spin_until(ready: Callable[[], bool], window: float | None = None) -> bool:
    """Poll ``ready()`` for up to ``window`` seconds (default ``WINDOW``),
    yielding the CPU between polls; True as soon as it is, False if the
    window ends first (then block as usual)."""
    if window is None:
        window = WINDOW
    if window <= 0:
        return ready()
    end = _now() + window
    while True:
        if ready():
            return True
        if _now() >= end:
            return False
        _yield()


def spin_if_waiting(ready: Callable[[], bool], timeout: float | None) -> None:
    """Before a thread blocks for up to ``timeout`` seconds on something that
    ``ready()`` reports: poll it for the window first (not for a zero or
    shorter time-out, which asks only whether it is ready), unless recent
    windows caught nothing (``Backoff``)."""
    if WINDOW and (timeout is None or timeout > WINDOW) and _thread_backoff.should_poll():
        if spin_until(ready):
            _thread_backoff.caught()
        else:
            _thread_backoff.missed()
