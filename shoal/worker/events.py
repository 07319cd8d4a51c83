"""Events from a worker and its tasks to the scheduler, and the worker
side of forwarded logging.

``WorkerEvents.log_event`` may be called from any thread (a task's, the
loop's).  An event goes to the scheduler ahead of anything the worker sends
after it was logged, the report of the task that logged it included: the
worker's ``_flush`` takes the pending events first.

Forwarded logging (``client.forward_logging``) is a worker plugin, as in
dask.distributed: ``ForwardLoggingPlugin`` puts a handler on a logger, on
every worker present and future (a worker that joins sets its plugins up
before it runs a task).  The handler publishes, on the logger's topic, each
record a task of *this* worker emits (in the task's thread).  Records from
other threads are not forwarded: several workers and a client may share one
process (``processes=False``), where "every record of the process" would be
forwarded once per worker and the client's own re-emitted records would come
back round.

Data flow::

    task thread --log_event--> pending deque --(loop) WorkerServer._flush-->
        LogEvent ahead of the batch --> scheduler (shoal/scheduler/events.py)
    task --logger.error(...)--> ForwardingHandler --log_event(topic, record attributes)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from shoal.plugins import WorkerPlugin
from shoal.protocol import messages as m
from shoal.protocol.events import check_message, check_topics, is_plain
from shoal.worker.executor import current_task

if TYPE_CHECKING:
    from shoal.worker.server import WorkerServer

_local = threading.local()  # a forwarding handler busy in this thread


class WorkerEvents:
    def __init__(self, worker: WorkerServer) -> None:
        self.worker = worker
        self._pending: deque[m.LogEvent] = deque()
        self._wake_scheduled = False

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log ``msg`` under ``topic`` (or each of a list of topics) at the
        scheduler; ``TypeError`` if it is not plain msgpack data."""
        topics = check_topics(topic)
        check_message(msg)
        self._pending.append(m.LogEvent(topics, msg))
        if self._wake_scheduled:
            return  # the loop has yet to send what is pending: this goes too
        loop = getattr(self.worker, "loop", None)
        if loop is None:
            return  # not started: sent with the first flush
        self._wake_scheduled = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: the worker has gone
            pass

    def _wake(self) -> None:
        self._wake_scheduled = False
        self.worker._send_scheduler([])

    def take(self) -> list[m.LogEvent]:
        """The events logged since the last call, oldest first (on the loop)."""
        pending = self._pending
        out = []
        while pending:
            out.append(pending.popleft())
        return out


class ForwardLoggingPlugin(WorkerPlugin):
    """On each worker: forward the records of ``logger_name`` (None: the root
    logger) at ``level`` or above that tasks emit, as events on ``topic``."""

    def __init__(self, logger_name: str | None, level: int, topic: str) -> None:
        self.logger_name = logger_name
        self.level = level
        self.topic = topic
        self.handler: ForwardingHandler | None = None

    def setup(self, worker: Any) -> None:
        self.handler = ForwardingHandler(worker, self.topic, self.level)
        logging.getLogger(self.logger_name).addHandler(self.handler)

    def teardown(self, worker: Any) -> None:
        if self.handler is not None:
            logging.getLogger(self.logger_name).removeHandler(self.handler)
            self.handler = None


class ForwardingHandler(logging.Handler):
    """Publishes the records its worker's tasks emit as events on ``topic``."""

    def __init__(self, worker: Any, topic: str, level: int) -> None:
        super().__init__(level)
        self.worker = worker
        self.topic = topic

    def emit(self, record: logging.LogRecord) -> None:
        task = current_task()
        if task is None or task[0] is not self.worker or getattr(_local, "busy", False):
            return
        _local.busy = True  # a record logged while publishing one is not forwarded
        try:
            self.worker.log_event(self.topic, self.attributes(record))
        except Exception:
            self.handleError(record)
        finally:
            _local.busy = False

    def attributes(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as plain data that ``logging.makeLogRecord`` rebuilds:
        the message formatted (its arguments may not travel), the traceback
        as text, anything else that is not plain data as its repr."""
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        out: dict[str, Any] = {}
        for name, value in record.__dict__.items():
            out[name] = value if is_plain(value) else _safe_repr(value)
        out["msg"] = record.getMessage()
        out["args"] = None
        out["exc_info"] = None
        out.pop("message", None)
        return out


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as e:
        return f"<unrepresentable {type(value).__name__}: {e!r}>"
