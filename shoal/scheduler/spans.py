"""Spans on the scheduler: what ``shoal.span`` groups, as dask's ``Span``.

A scheduler extension (see ``server.py``).  A client declares a span
(``SpanDeclared``: its ids and names, outermost first) before the first task
submitted in it; each task spec carries the id of its innermost span.  The
extension notes each span's tasks when they are submitted and follows their
transitions in the state machine's log after each batch (the state machine
itself knows nothing of spans, and pays nothing for them).

``server.spans[span_id]`` is the ``Span``: its name, parent and children,
when it was first seen (``enqueued``), when its first task started and its
last one finished (``start``, ``stop``), and how many of its tasks are in
each state (``states``).  Nothing is sent back to clients.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from shoal.protocol import messages as m

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

#: how many spans are kept; the oldest go first past this
MAX_SPANS = 10_000


class Span:
    """A group of tasks submitted inside ``with shoal.span(...)``."""

    __slots__ = ("children", "done", "enqueued", "id", "keys", "name", "parent", "start", "states",
                 "stop")

    def __init__(self, span_id: str, name: tuple[str, ...], parent: Span | None, now: float) -> None:
        self.id = span_id
        self.name = name
        self.parent = parent
        self.children: list[Span] = []
        self.enqueued = now
        self.start = 0.0  # when one of its tasks first began running (0: none yet)
        self.stop = 0.0  # when one of its tasks last finished
        self.keys: set[str] = set()
        self.states: Counter[str] = Counter()  # its tasks by their latest state
        self.done = False  # every task of it finished (memory, erred or forgotten)

    def traverse_spans(self) -> list[Span]:
        """This span and every span inside it, depth first."""
        out = [self]
        for child in self.children:
            out += child.traverse_spans()
        return out

    def __repr__(self) -> str:
        return f"Span<name={self.name}, id={self.id}>"


class Spans:
    client_messages = {m.SpanDeclared: "span_declared"}

    def __init__(self, server: SchedulerServer) -> None:
        self.server = server
        self.spans: dict[str, Span] = {}
        self._key_span: dict[str, Span] = {}  # tasks of live spans -> their span
        self._seen = 0  # transitions read so far

    def __getitem__(self, span_id: str) -> Span:
        return self.spans[span_id]

    def span_declared(self, client_id: str, msg: m.SpanDeclared) -> None:
        now = time.time()
        parent = None
        for i, span_id in enumerate(msg.ids):
            s = self.spans.get(span_id)
            if s is None:
                s = self.spans[span_id] = Span(span_id, tuple(msg.names[: i + 1]), parent, now)
                if parent is not None:
                    parent.children.append(s)
            parent = s
        while len(self.spans) > MAX_SPANS:
            self._drop(next(iter(self.spans)))

    def tasks_submitted(self, client_id: str, msgs: list[Any]) -> None:
        """Before the scheduler handles a client's batch: note which span
        each new task belongs to (the server calls this only once spans exist
        or the batch declares one)."""
        for msg in msgs:
            if type(msg) is m.SpanDeclared:
                self.span_declared(client_id, msg)
            elif type(msg) is m.SubmitTasks:
                for spec in msg.tasks:
                    if spec.span:
                        s = self.spans.get(spec.span)
                        if s is not None and spec.key not in self._key_span:
                            s.keys.add(spec.key)
                            self._key_span[spec.key] = s

    def batch_handled(self) -> None:
        """The transitions of the spans' tasks since the last batch."""
        state = self.server.state
        new = state.transition_counter - self._seen
        self._seen = state.transition_counter
        if new <= 0 or not self._key_span:
            return
        log = state.log
        now = time.time()
        touched: set[Span] = set()
        for key, start, finish, _, _ in (log[i] for i in range(max(0, len(log) - new), len(log))):
            s = self._key_span.get(key)
            if s is None:
                continue
            start_s, finish_s = str(start), str(finish)
            if s.states[start_s] > 0:
                s.states[start_s] -= 1
            s.states[finish_s] += 1
            if finish_s == "processing" and not s.start:
                s.start = now
            if finish_s in ("memory", "erred"):
                s.stop = now
            if finish_s == "forgotten":
                del self._key_span[key]
            touched.add(s)
        for s in touched:
            s.done = all(s.states[k] == 0 for k in ("waiting", "queued", "no-worker", "processing",
                                                    "released"))

    def _drop(self, span_id: str) -> None:
        s = self.spans.pop(span_id)
        for key in s.keys:
            if self._key_span.get(key) is s:
                del self._key_span[key]
        if s.parent is not None and s in s.parent.children:
            s.parent.children.remove(s)
