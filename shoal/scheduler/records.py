"""The scheduler's records: plain slotted objects, no logic.

Memory matters here (a scheduler may hold millions of tasks), so a record
stores nothing it can derive, uses ``None`` for empty collections, and keeps
counts instead of sets where only the count is ever asked for.
"""

from __future__ import annotations

import enum
import sys
from typing import Any

from shoal.protocol.serialize import Payload


class SchedulerTaskStatus(str, enum.Enum):
    RELEASED = "released"
    WAITING = "waiting"
    QUEUED = "queued"
    NO_WORKER = "no-worker"
    PROCESSING = "processing"
    MEMORY = "memory"
    ERRED = "erred"
    FORGOTTEN = "forgotten"

    def __str__(self) -> str:
        return self.value


RELEASED = SchedulerTaskStatus.RELEASED
WAITING = SchedulerTaskStatus.WAITING
QUEUED = SchedulerTaskStatus.QUEUED
NO_WORKER = SchedulerTaskStatus.NO_WORKER
PROCESSING = SchedulerTaskStatus.PROCESSING
MEMORY = SchedulerTaskStatus.MEMORY
ERRED = SchedulerTaskStatus.ERRED
FORGOTTEN = SchedulerTaskStatus.FORGOTTEN

#: states in which a task still needs its dependencies
RUNNABLE = frozenset({WAITING, QUEUED, NO_WORKER, PROCESSING})


class Restrictions:
    """Where a task may run (``workers=``, ``allow_other_workers=``, ``resources=``)."""

    __slots__ = ("actor", "loose", "resources", "workers")

    def __init__(
        self,
        workers: frozenset[str] | None,
        loose: bool,
        resources: dict[str, float] | None,
        actor: bool = False,
    ) -> None:
        self.workers = workers  # addresses, names or hosts
        self.loose = loose  # allow_other_workers
        self.resources = resources
        self.actor = actor


class TaskRecord:
    __slots__ = (
        "args",  # pickled (args, kwargs): Payload, or its bytes; None if scattered
        "dependents",  # set[TaskRecord] | None
        "deps",  # tuple[TaskRecord, ...]
        "erred_on",  # address of the worker whose failure this is, for messages
        "exception",  # (exception Payload, traceback Payload, text) when erred
        "func",  # function id (bytes), or None for scattered data
        "key",
        "n_waiters",  # dependents in a RUNNABLE state
        "n_waiting",  # deps not in memory
        "n_wanted",  # clients holding a future for this key
        "nbytes",
        "prefix",  # the function name part of the key: duration statistics
        "priority",  # int, smaller runs first
        "processing_on",  # WorkerRecord | None
        "restrictions",  # Restrictions | None
        "retries",
        "run_id",  # of the current ExecuteTask while processing, else 0
        "state",
        "suspicious",  # workers that died while running it
        "type_name",
        "value",  # Payload: inline copy of a small result
        "who_has",  # tuple[WorkerRecord, ...]
    )

    def __init__(self, key: str, func: bytes | None, args: Payload | bytes | None, priority: int) -> None:
        self.key = key
        self.prefix = key_prefix(key)
        self.func = func
        self.args = args
        self.priority = priority
        self.state = RELEASED
        self.deps: tuple[TaskRecord, ...] = ()
        self.dependents: set[TaskRecord] | None = None
        self.n_waiting = 0
        self.n_waiters = 0
        self.n_wanted = 0
        self.who_has: tuple[WorkerRecord, ...] = ()
        self.processing_on: WorkerRecord | None = None
        self.retries = 0
        self.run_id = 0
        self.nbytes = 0
        self.type_name = ""
        self.value: Payload | None = None
        self.exception: tuple[Payload, Payload, str] | None = None
        self.restrictions: Restrictions | None = None
        self.suspicious = 0
        self.erred_on = ""

    def __repr__(self) -> str:
        return f"<TaskRecord {self.key!r} {self.state.value}>"


class WorkerRecord:
    __slots__ = (
        "address",
        "executing",
        "functions",  # ids of the functions this worker was sent
        "has_what",  # set[TaskRecord]
        "host",
        "last_seen",
        "long_running",  # processing tasks that seceded: they take no slot
        "memory",
        "memory_limit",
        "memory_paused",  # the worker said it paused (memory), whatever its status since
        "metrics",
        "name",
        "nbytes",
        "nthreads",
        "occupancy",
        "pid",
        "processing",  # dict[TaskRecord, float]: estimated duration
        "resources",
        "status",  # "running", "paused" (memory: no new tasks), "closing_gracefully" (retiring) or "closed"
        "stopping",  # set[int]: runs taken back that may still hold a thread
        "supervised",  # a supervisor restarts it when asked (client.restart)
    )

    def __init__(
        self,
        address: str,
        name: str,
        nthreads: int,
        memory_limit: int = 0,
        host: str = "",
        pid: int = 0,
        resources: dict[str, float] | None = None,
    ) -> None:
        self.address = address
        self.name = name
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.host = host
        self.pid = pid
        self.resources = dict(resources or {})
        self.processing: dict[TaskRecord, float] = {}
        self.has_what: set[TaskRecord] = set()
        self.functions: set[bytes] = set()
        self.long_running: set[TaskRecord] = set()
        self.memory_paused = False
        self.stopping: set[int] = set()
        self.occupancy = 0.0
        self.nbytes = 0
        self.executing = 0
        self.memory = 0
        self.metrics: dict[str, Any] = {}
        self.last_seen = 0.0
        self.status = "running"
        self.supervised = False

    @property
    def busy(self) -> int:
        """Tasks taking one of this worker's slots: those it processes (less
        the ones that seceded), and runs taken back from it that may still
        hold a thread (a thread cannot be stopped: a cancelled task runs to
        its end) until the worker says they ended; at most one per thread."""
        stopping = self.stopping
        n = len(self.processing) - len(self.long_running)
        return n + min(len(stopping), self.nthreads) if stopping else n

    def __repr__(self) -> str:
        return f"<WorkerRecord {self.address} {self.name!r} processing={len(self.processing)}>"


class ClientRecord:
    __slots__ = ("client_id", "last_seen", "wants")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.wants: set[TaskRecord] = set()
        self.last_seen = 0.0

    def __repr__(self) -> str:
        return f"<ClientRecord {self.client_id} wants={len(self.wants)}>"




_HEX_CHARS = "0123456789abcdef"


def key_prefix(key: str) -> str:
    """``"inc-8d0a..."`` -> ``"inc"``: the part of a key that names the function
    (keys are ``<name>-<token>`` or ``<name>-<uuid>-<i>``).  Interned, so a
    million tasks of one function share one string."""
    head, sep, tail = key.rpartition("-")
    while sep and tail and not tail.strip(_HEX_CHARS):
        key = head
        head, sep, tail = key.rpartition("-")
    return sys.intern(key)
