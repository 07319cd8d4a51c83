"""Every message shoal sends, as typed msgspec structs.

Rules:
1. A network connection opens with the handshake of
   ``shoal/comm/handshake.py`` (the version, the role, the token: raw
   records, before any message), then ``Hello`` (the connecting side)
   answered by ``Welcome`` or ``Rejected``.
2. After that, every wire message is a *batch*: a list of the structs below,
   encoded with msgpack into the first frame.  User data inside them is a
   :class:`~shoal.protocol.serialize.Payload`, encoded as a msgpack extension
   that points at further frames (see ``shoal.comm.codec``).
3. Messages are named for what they say: facts in the past tense
   (``TaskFinished``) or requests in the imperative (``ExecuteTask``).
4. Hot-path structs are ``array_like`` (no field names on the wire).
5. No message is tracked by the garbage collector (``gc=False``): a message
   is plain data and never part of a reference cycle, and a few of them
   are made per task in every process (untracked, they cost no collection
   any time).  Keep it so: a message must never refer back to itself.

Data flow::

    client ──SubmitTasks/ReleaseKeys/CancelKeys/Request──▶ scheduler
    client ──SubscribeTopic/UnsubscribeTopic──▶ scheduler
    client ◀──TaskDone/TaskErred/ReleaseHandled/Response── scheduler
    client ◀──EventLogged── scheduler                      (subscribed topics)
    worker ──TaskFinished/TaskFailed/RunsEnded/...───────▶ scheduler
    worker ──LogEvent──▶ scheduler                          (before the task's report)
    worker ◀──ExecuteTask/FreeKeys/DefineFunctions──────── scheduler
    client/worker ──GetData/PutData──▶ worker ──DataReply/PutDataAck──▶
    client ──SubscribeResults──▶ worker ──ResultPushed──▶ client   (a shortcut)
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from shoal.protocol.serialize import Payload

PROTOCOL_VERSION = 2  # 2: the authenticated handshake before any message


class _Msg(msgspec.Struct, array_like=True, omit_defaults=True, tag_field="op", gc=False):
    pass


# ---------------------------------------------------------------------------
# handshake
# ---------------------------------------------------------------------------


class Hello(_Msg, tag="hello"):
    version: int
    role: str  # "client" | "worker" | "peer"
    name: str = ""
    pid: int = 0


class Welcome(_Msg, tag="welcome"):
    version: int
    id: str = ""
    info: dict[str, Any] = {}


class Rejected(_Msg, tag="rejected"):
    reason: str


# ---------------------------------------------------------------------------
# client -> scheduler
# ---------------------------------------------------------------------------


class FunctionDef(msgspec.Struct, array_like=True, gc=False):
    id: bytes
    blob: bytes


class TaskSpec(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    key: str
    func: bytes  # a FunctionDef id
    args: Payload  # pickled (args, kwargs); futures inside are references to deps
    deps: tuple[str, ...] = ()  # a tuple: untracked by the collector (kept per task on both sides)
    priority: int = 0
    retries: int = 0
    workers: list[str] | None = None
    allow_other_workers: bool = False
    resources: dict[str, float] | None = None
    actor: bool = False
    span: str = ""  # the id of the span it was submitted in (shoal.span), if any


class SubmitTasks(_Msg, tag="submit"):
    """New tasks; the sending client wants every key in ``tasks``."""

    tasks: list[TaskSpec]
    functions: list[FunctionDef] = []


class SpanDeclared(_Msg, tag="span"):
    """The spans a client's next tasks belong to (``shoal.span``): ids and
    names, outermost first; sent once per span before its first task."""

    ids: list[str]
    names: list[str]


class WantKeys(_Msg, tag="want"):
    keys: list[str]


class ReleaseKeys(_Msg, tag="release"):
    keys: list[str]


class CancelKeys(_Msg, tag="cancel"):
    keys: list[str]
    force: bool = False
    reason: str = ""  # why (client.cancel(reason=...)), for everyone who held the keys
    msg: str = ""  # what the canceller adds (client.cancel(msg=...))


class RetryKeys(_Msg, tag="retry"):
    keys: list[str]


class FireAndForget(_Msg, tag="fire-and-forget"):
    keys: list[str]


class ScatteredKey(msgspec.Struct, array_like=True, gc=False):
    key: str
    workers: list[str]
    nbytes: int
    type_name: str


class DataScattered(_Msg, tag="scattered"):
    """The client put these keys on these workers and holds futures for them."""

    keys: list[ScatteredKey]


class Request(_Msg, tag="req"):
    """A request answered by exactly one ``Response`` with the same id."""

    id: int
    method: str
    args: dict[str, Any] = {}


class Response(_Msg, tag="resp"):
    id: int
    ok: bool
    value: Any = None  # the result, or an error message when not ok


class Heartbeat(_Msg, tag="heartbeat"):
    metrics: dict[str, Any] = {}


class SubscribeTopic(_Msg, tag="subscribe-topic"):
    """Send this client every event logged under ``topic`` from now on."""

    topic: str


class UnsubscribeTopic(_Msg, tag="unsubscribe-topic"):
    topic: str


class ResumeClient(_Msg, tag="resume-client"):
    """With ``Hello``, from a client whose connection broke: "I am
    ``client_id``, keep my futures" (shoal/scheduler/client_sessions.py)."""

    client_id: str


class ReconcileKeys(_Msg, tag="reconcile-keys"):
    """After a resume: every key the client holds now.  The scheduler
    releases the others it kept for the client and reports where each of
    these stands (what was said while apart may have been lost)."""

    keys: list[str]


class ClientLeaving(_Msg, tag="client-leaving"):
    """The client closes for good: release its keys when its connection
    closes, with no grace period."""


# ---------------------------------------------------------------------------
# scheduler -> client
# ---------------------------------------------------------------------------


class SchedulerClosing(_Msg, tag="scheduler-closing"):
    """The scheduler closes for good: a client need not reconnect."""

    reason: str = ""


class TaskDone(_Msg, tag="done"):
    key: str
    type_name: str
    nbytes: int
    workers: tuple[str, ...]  # a tuple: untracked by the collector, as a client keeps one per future
    value: Payload | None = None  # small results travel with the notice


class TaskErred(_Msg, tag="erred"):
    key: str
    exception: Payload
    traceback: Payload
    text: str


class TasksCancelled(_Msg, tag="cancelled"):
    keys: list[str]
    reason: str = ""
    msg: str = ""


class TasksLost(_Msg, tag="lost"):
    keys: list[str]
    reason: str = ""


class ReleaseHandled(_Msg, tag="release-handled"):
    """The scheduler has handled ``count`` more ``ReleaseKeys`` of this client
    (they are answered in order).  News about those keys sent before it is
    about the futures released; after it, about any new ones.  It travels
    ahead of the next news for the client, or on its own every
    ``scheduler.worker-check-interval`` (see client/releases.py)."""

    count: int = 1


class WorkersChanged(_Msg, tag="workers"):
    added: list[str] = []
    removed: list[str] = []


class EventLogged(_Msg, tag="event"):
    """An event under a topic this client subscribed to: ``time`` is the
    scheduler's clock (seconds since the epoch) when it was logged."""

    topic: str
    time: float
    msg: Any = None


# ---------------------------------------------------------------------------
# worker <-> scheduler
# ---------------------------------------------------------------------------


class RegisterWorker(_Msg, tag="register-worker"):
    address: str
    name: str
    nthreads: int
    memory_limit: int = 0
    resources: dict[str, float] = {}
    pid: int = 0
    host: str = ""
    supervised: bool = False  # a supervisor (nanny) restarts this worker when asked to
    restarted: str = ""  # started by its nanny in place of one that died: why it died


class TaskFinished(_Msg, tag="finished"):
    key: str
    nbytes: int
    type_name: str
    duration: float
    value: Payload | None = None  # inline copy of a small result
    run_id: int = 0  # the ExecuteTask this answers


class TaskFailed(_Msg, tag="failed"):
    key: str
    exception: Payload
    traceback: Payload
    text: str
    duration: float = 0.0
    run_id: int = 0  # the ExecuteTask this answers
    reschedule: bool = False  # the task raised Reschedule: run it again, not an error


class TaskSeceded(_Msg, tag="seceded"):
    """The task left its worker's thread pool to wait on other tasks: it no
    longer takes one of the worker's slots."""

    key: str
    run_id: int = 0


class WorkerStatus(_Msg, tag="worker-status"):
    """The worker paused (``"paused"``: its memory passed the pause
    threshold; it starts nothing new) or resumed (``"running"``)."""

    status: str


class StealResponse(_Msg, tag="steal-response"):
    """Answer to ``StealRequest``: ``stolen`` if the worker had not started
    that run and dropped it."""

    key: str
    run_id: int
    stolen: bool


class RunsEnded(_Msg, tag="runs-ended"):
    """Runs the scheduler took back (``FreeKeys.run_ids``) no longer hold a
    thread here: they ended, were never started, or were never here."""

    run_ids: list[int]


class LogEvent(_Msg, tag="log-event"):
    """Log ``msg`` (plain msgpack data, see shoal.protocol.events) under
    each of ``topics``; sent by a worker ahead of the report of the task that
    logged it."""

    topics: list[str]
    msg: Any = None


class ReplicasAdded(_Msg, tag="replicas-added"):
    """The worker fetched copies of these keys from peers."""

    keys: list[str]
    nbytes: list[int]


class DataMissing(_Msg, tag="missing"):
    """None of ``workers`` had ``key`` when this worker asked; the tasks here
    that needed it are waiting for the scheduler to say what to do."""

    key: str
    workers: list[str]


class DependencyLocation(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    key: str
    workers: list[str]
    nbytes: int = 0
    value: Payload | None = None  # inline copy held by the scheduler


class ExecuteTask(_Msg, tag="execute"):
    """Run ``key``.  Every ExecuteTask has a fresh ``run_id``, which the
    worker's report repeats: a report about a run the scheduler has since
    taken back is recognised as such, whatever happened to the key since."""

    key: str
    func: bytes
    args: Payload
    priority: int
    deps: list[DependencyLocation] = []
    actor: bool = False
    run_id: int = 0
    push_to: str = ""  # a client that may hear the result from the worker directly


class DefineFunctions(_Msg, tag="functions"):
    functions: list[FunctionDef]


class FreeKeys(_Msg, tag="free"):
    """Forget these keys: drop their data, abandon their execution.

    ``run_ids``, when given, pairs each key with the run of it the scheduler
    takes back (0: none).  A thread running one cannot be stopped, so the
    scheduler counts it as busy until the worker answers ``RunsEnded``."""

    keys: list[str]
    run_ids: list[int] = []


class StealRequest(_Msg, tag="steal-request"):
    """Give run ``run_id`` of ``key`` back if it has not started (an idle
    worker will take it); answered by ``StealResponse``."""

    key: str
    run_id: int


class CloseWorker(_Msg, tag="close-worker"):
    """Leave the cluster for good: the worker exits cleanly and its
    supervisor, if any, does not start it again."""

    reason: str = ""


# ---------------------------------------------------------------------------
# data plane: client or peer worker <-> worker
# ---------------------------------------------------------------------------


class SharedData(msgspec.Struct, array_like=True, gc=False):
    """Where a value lives in shared memory on this host (see worker/shm.py)."""

    pid: int
    fd: int
    name: str
    size: int
    pickled: bytes
    offsets: list[int]
    lengths: list[int]


class GetData(_Msg, tag="get-data"):
    id: int
    keys: list[str]
    shm_host: str = ""  # the asker's host identity: same host, shared memory may answer


class DataReply(_Msg, tag="data"):
    id: int
    data: dict[str, Payload]
    missing: list[str] = []
    errors: dict[str, str] = {}
    shared: dict[str, SharedData] = {}


class PutData(_Msg, tag="put-data"):
    id: int
    data: dict[str, Payload]
    nbytes: dict[str, int] = {}
    types: dict[str, str] = {}
    shared: dict[str, SharedData] = {}  # same host: where to map them from


class PutDataAck(_Msg, tag="put-ack"):
    id: int
    error: str = ""
    unreachable: list[str] = []  # shared keys this worker could not map: send them again


class Echo(_Msg, tag="echo"):
    """Sent back unchanged by the worker that receives it: the network part
    of ``client.benchmark_hardware()``."""

    id: int
    data: Payload


class SubscribeResults(_Msg, tag="subscribe"):
    """From a client on its data connection to a worker: results of this
    client's tasks may come this way too (``ResultPushed``)."""

    client: str


class ResultPushed(_Msg, tag="pushed"):
    """A small result, sent by the worker that computed it straight to the
    client waiting for it, ahead of the scheduler's ``TaskDone`` (which still
    follows and stays the authority).  Saves a hop and a scheduler step."""

    key: str
    type_name: str
    nbytes: int
    worker: str
    value: Payload


class ActorCall(_Msg, tag="actor-call"):
    """Call a method of (``kind="call"``) or read an attribute of
    (``kind="getattr"``) the actor stored under ``key``."""

    id: int
    key: str
    name: str
    args: Payload | None = None
    kind: str = "call"


class ActorReply(_Msg, tag="actor-reply"):
    id: int
    ok: bool
    value: Payload | None = None
    exception: Payload | None = None
    traceback: Payload | None = None
    text: str = ""


Message = Union[
    Hello,
    Welcome,
    Rejected,
    SubmitTasks,
    SpanDeclared,
    WantKeys,
    ReleaseKeys,
    CancelKeys,
    RetryKeys,
    FireAndForget,
    DataScattered,
    Request,
    Response,
    Heartbeat,
    SubscribeTopic,
    UnsubscribeTopic,
    ResumeClient,
    ReconcileKeys,
    ClientLeaving,
    SchedulerClosing,
    TaskDone,
    TaskErred,
    TasksCancelled,
    TasksLost,
    ReleaseHandled,
    WorkersChanged,
    EventLogged,
    RegisterWorker,
    TaskFinished,
    TaskFailed,
    TaskSeceded,
    WorkerStatus,
    StealResponse,
    RunsEnded,
    LogEvent,
    ReplicasAdded,
    DataMissing,
    ExecuteTask,
    DefineFunctions,
    FreeKeys,
    StealRequest,
    CloseWorker,
    GetData,
    DataReply,
    PutData,
    PutDataAck,
    Echo,
    SubscribeResults,
    ResultPushed,
    ActorCall,
    ActorReply,
]
