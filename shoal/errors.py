"""Every exception shoal raises, in one place.

    Exception
    ├── ShoalError                       base of shoal's own errors
    │   ├── ProtocolError                a peer broke the wire protocol
    │   │   ├── LocalProtocolError       ...we were about to send something invalid
    │   │   └── RemoteProtocolError      ...the peer sent something invalid
    │   ├── CommClosedError              the connection is gone (also an OSError)
    │   ├── AuthenticationError          the peer does not hold our token, or we not its
    │   │                                (also a ConnectionRefusedError)
    │   ├── SerializationError           an object could not be (de)serialized
    │   ├── KilledWorker                 a task took down workers too many times
    │   ├── FutureLost                   a result was lost and cannot be recomputed
    │   ├── SchedulerError               the scheduler refused a request
    │   │   └── WorkerRequestError       ...because a worker it asked did
    │   └── InvalidTransition / InvariantViolation   a state machine bug (tests)
    ├── Reschedule                       raised by a task: run it again, maybe elsewhere
    ├── CancelledError                   (concurrent.futures.CancelledError) a future was cancelled
    │   ├── FutureCancelledError         ...this one, for this reason (dask's)
    │   └── FuturesCancelledError        ...some of those wait() waited on (dask's)
    └── TimeoutError                     (builtin) a wait ran out of time
        └── WorkerStartTimeoutError      ...for workers to arrive (``wait_for_workers``)

A user's own exception is never wrapped: ``Future.result()`` re-raises it as
itself, with the remote traceback attached.  Only when the exception could not
travel (it did not pickle or unpickle) does a :class:`RemoteException` stand
in for it, carrying the original type name, message and traceback text.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import CancelledError
from typing import Any

__all__ = [
    "AuthenticationError",
    "CancelledError",
    "CancelledFuturesGroup",
    "CommClosedError",
    "FutureCancelledError",
    "FutureLost",
    "FuturesCancelledError",
    "InvalidTransition",
    "InvariantViolation",
    "KilledWorker",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteException",
    "RemoteProtocolError",
    "Reschedule",
    "SchedulerError",
    "SerializationError",
    "ShoalError",
    "WorkerRequestError",
    "WorkerStartTimeoutError",
]


class ShoalError(Exception):
    """Base class of the errors shoal itself raises."""


class ProtocolError(ShoalError):
    """The wire protocol was broken."""


class LocalProtocolError(ProtocolError):
    """We were about to send something that breaks the protocol (our bug)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol (their bug, or garbage)."""


class CommClosedError(ShoalError, OSError):
    """The connection was closed, by the peer or by us."""


class AuthenticationError(ShoalError, ConnectionRefusedError):
    """A connection was refused in its handshake because of the token: the
    server requires one and none was given, the two differ, or the server
    could not prove it holds ours.  The message says which, and where."""


class SerializationError(ShoalError):
    """An object could not be pickled or unpickled."""


class KilledWorker(ShoalError):
    """A task was running on workers that died too many times.

    The task is suspected of killing its workers (segfault, out of memory, a
    call to ``os._exit``); shoal stops retrying it instead of taking down the
    whole cluster.
    """

    def __init__(self, key: str, last_worker: str, allowed_failures: int) -> None:
        super().__init__(
            f"Attempted to run task {key!r} on {allowed_failures + 1} different workers, "
            f"but all those workers died while running it. The last worker that attempted "
            f"to run the task was {last_worker}. Inspecting worker logs is often a good next "
            f"step to diagnose what went wrong (client.get_events('worker-restarted') says "
            f"why each worker was restarted)."
        )
        self.key = key
        #: the address of the last worker that died running it (dask: its WorkerState)
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures

    @property
    def task(self) -> str:
        """The key of the task (dask.distributed's name for it)."""
        return self.key

    def __reduce__(self) -> tuple[type, tuple[str, str, int]]:
        return (KilledWorker, (self.key, self.last_worker, self.allowed_failures))


class FutureLost(ShoalError):
    """The data behind a future was lost (its worker died) and cannot be rebuilt,
    e.g. it was scattered rather than computed."""


class Reschedule(Exception):
    """Raise this in a task to stop it and have the scheduler run it again,
    possibly on another worker (where its usual rules place it), as in
    dask.distributed.  It does not count as a failure (nor against
    ``retries``)."""


class FutureCancelledError(CancelledError):
    """``result()`` of a cancelled future: which key, why (``reason``) and
    what the canceller said (``msg``), as in dask.distributed."""

    def __init__(self, key: str, reason: str | None, msg: str | None = None) -> None:
        super().__init__(key, reason, msg)
        self.key = key
        self.reason = reason if reason else "unknown"
        self.msg = msg

    def __str__(self) -> str:
        text = f"{self.key} cancelled for reason: {self.reason}."
        if self.msg:
            text += f"\n{self.msg}"
        return text

    def __reduce__(self) -> tuple[Any, tuple[str, str, str | None]]:
        return (FutureCancelledError, (self.key, self.reason, self.msg))


class CancelledFuturesGroup:
    """Cancelled futures that share a reason (in ``FuturesCancelledError``)."""

    __slots__ = ("errors", "reason")

    def __init__(self, errors: list[FutureCancelledError], reason: str) -> None:
        self.errors = errors
        self.reason = reason

    def __str__(self) -> str:
        keys = [e.key for e in self.errors]
        message = next((e.msg for e in self.errors if e.msg), None)
        plural = "s" if len(keys) > 1 else ""
        return (f"{len(keys)} Future{plural} cancelled for reason: {self.reason}.\n"
                f"Message: {message}\nFuture{plural}: {keys}")


class FuturesCancelledError(CancelledError):
    """``wait()`` found futures cancelled: grouped by reason, largest first, as
    in dask.distributed."""

    def __init__(self, error_groups: list[CancelledFuturesGroup]) -> None:
        super().__init__(error_groups)
        self.error_groups = sorted(error_groups, key=lambda g: len(g.errors), reverse=True)

    def __str__(self) -> str:
        count = sum(len(g.errors) for g in self.error_groups)
        return "\n".join([f"{count} Future{'s' if count > 1 else ''} cancelled:", "Reasons:",
                          *(str(g) for g in self.error_groups)])


class SchedulerError(ShoalError):
    """The scheduler answered a request with an error."""


class WorkerRequestError(SchedulerError):
    """A worker answered the scheduler's request with an error.  The
    scheduler does not unpickle it: ``payload`` (the pickled exception, if
    the worker could pickle it) goes on to the client, which raises it."""

    def __init__(self, message: str, payload: object = None) -> None:
        super().__init__(message)
        self.payload = payload


class WorkerStartTimeoutError(TimeoutError):
    """Fewer workers than waited for arrived in time (dask.distributed's
    exception of the same name and message, ``wait_for_workers``)."""

    def __init__(self, available_workers: int, expected_workers: int, timeout: float) -> None:
        super().__init__(available_workers, expected_workers, timeout)
        self.available_workers = available_workers
        self.expected_workers = expected_workers
        self.timeout = timeout

    def __str__(self) -> str:
        return (f"Only {self.available_workers}/{self.expected_workers} workers arrived "
                f"after {self.timeout}")


class RemoteException(ShoalError):
    """Stands in for a remote exception that could not be sent or rebuilt here."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (RemoteException, (self.type_name, self.message, self.traceback_text))


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of a re-raised task exception: the traceback as
    the worker printed it (the approach of CPython's ``concurrent.futures.process``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class InvalidTransition(ShoalError):
    """A state machine was asked for a transition its table does not allow."""

    def __init__(self, key: str, start: str, finish: str, story: Sequence[tuple[object, ...]]) -> None:
        lines = "\n".join(f"  {entry}" for entry in story[-20:])
        super().__init__(f"{key!r}: no transition {start} -> {finish}\nstory:\n{lines}")
        self.key = key
        self.start = start
        self.finish = finish
        self.story = list(story)

    def __reduce__(self) -> tuple[type, tuple[str, str, str, list[tuple[object, ...]]]]:
        return (InvalidTransition, (self.key, self.start, self.finish, self.story))


class InvariantViolation(ShoalError):
    """A state machine's internal invariants do not hold (a bug in shoal)."""
