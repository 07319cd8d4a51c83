"""Statistical profiling: sampled call stacks counted into call trees.

A *call tree* is dask.distributed's nested dict layout, so tools written for
dask's profiles read shoal's::

    {"identifier": "root", "count": 12,             # samples through this node
     "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
     "children": {"square;/app/f.py;3": {...same layout...}, ...}}

A child's key (its ``identifier``) is ``"<function>;<file>;<first line>"``;
its ``description`` is where the function was when first seen.  The
functions ``create``, ``add_stack``, ``merge`` and ``select`` are pure (no
threads, no clocks); ``Sampler`` is the thread that feeds them.

Data flow (one worker)::

    Sampler thread, every ``interval``:
        running() -> {thread ident: task key}  (the executor's, a dict copy)
        sys._current_frames() -> stack of each such thread, cut below the
        executor's frame -> added to ``recent`` and to ``recent[prefix]``
    every ``cycle``: (time, recent, {prefix: tree}) -> ``history`` (bounded)
    profile(start, stop, key) -> merge of the cycles in [start, stop] + recent

Rules:
1. No frame is kept after a sample: a stack becomes strings at once.
2. The sampler holds ``lock`` while it changes a tree; readers merge under
   it, and ``merge`` always builds new dicts, so an answer never aliases a
   tree that is still growing.
"""

from __future__ import annotations

import bisect
import linecache
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any

#: frames kept per sample, counted from the outermost: deeper ones are cut
MAX_DEPTH = 100


def create() -> dict[str, Any]:
    """An empty call tree."""
    return {
        "count": 0,
        "children": {},
        "identifier": "root",
        "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
    }


def identifier(code: CodeType) -> str:
    return f"{code.co_name};{code.co_filename};{code.co_firstlineno}"


def describe(frame: FrameType) -> dict[str, Any]:
    """``{"filename", "name", "line_number", "line"}`` of where ``frame`` is."""
    code = frame.f_code
    lineno = frame.f_lineno or code.co_firstlineno
    line = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
    return {"filename": code.co_filename, "name": code.co_name, "line_number": lineno, "line": line}


def stack_of(frame: FrameType | None, stop: CodeType | None = None) -> list[FrameType]:
    """The frames from the one below ``stop``'s frame (or the outermost) down
    to ``frame``, outermost first, at most ``MAX_DEPTH``."""
    frames = []
    while frame is not None and frame.f_code is not stop:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames[:MAX_DEPTH]


def add_stack(tree: dict[str, Any], frames: Iterable[FrameType]) -> None:
    """Count one sample of ``frames`` (outermost first) into ``tree``."""
    tree["count"] += 1
    node = tree
    for frame in frames:
        ident = identifier(frame.f_code)
        children = node["children"]
        child = children.get(ident)
        if child is None:
            child = children[ident] = {
                "count": 0, "children": {}, "identifier": ident, "description": describe(frame),
            }
        child["count"] += 1
        node = child


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    """One tree counting the samples of all of ``trees`` (new dicts; the
    inputs are not changed).  Nodes meet by identifier."""
    if not trees:
        return create()
    first = trees[0]
    by_child: dict[str, list[dict[str, Any]]] = {}
    for tree in trees:
        for ident, child in tree["children"].items():
            by_child.setdefault(ident, []).append(child)
    return {
        "count": sum(t["count"] for t in trees),
        "children": {ident: merge(*group) for ident, group in by_child.items()},
        "identifier": first["identifier"],
        "description": dict(first["description"]),
    }


def select(history: list[tuple[float, Any]], start: float | None, stop: float | None) -> list[Any]:
    """The entries of ``history`` (``(time, x)``, oldest first) with
    ``start <= time``, up to the first one at or after ``stop`` (a cycle
    stamped at its end covers the time before it)."""
    times = [t for t, _ in history]
    lo = 0 if start is None else bisect.bisect_left(times, start)
    hi = len(history) if stop is None else min(len(history), bisect.bisect_left(times, stop) + 1)
    return [x for _, x in history[lo:hi]]


def format_stack(frames: Iterable[FrameType]) -> list[str]:
    """Lines as in a traceback, one per frame, outermost first (dask's
    ``call_stack`` layout)."""
    out = []
    for frame in frames:
        d = describe(frame)
        out.append(f'  File "{d["filename"]}", line {d["line_number"]}, in {d["name"]}\n\t{d["line"]}')
    return out


class Sampler:
    """A thread that samples, every ``interval`` seconds, the threads running
    tasks (``running()``: ``{ident: key}``) and, once asked, one more thread
    (an event loop: ``watch_thread``), and keeps their call trees in cycles of
    ``cycle`` seconds, ``history_length`` cycles back.

    ``alive()`` is asked every tick; the thread ends when it says False, or
    at once on ``stop()``.
    ``key_prefix`` turns a task key into the name its tree is filed under.
    """

    def __init__(self, interval: float, cycle: float, history_length: int,
                 running: Callable[[], dict[int, str]], alive: Callable[[], bool],
                 key_prefix: Callable[[str], str], stop_code: CodeType | None = None,
                 name: str = "shoal-profile", clock: Callable[[], float] = time.time) -> None:
        if interval <= 0 or cycle <= 0:
            raise ValueError(f"profile interval and cycle must be positive, got {interval}, {cycle}")
        self.interval = interval
        self.cycle = cycle
        self.running = running
        self.alive = alive
        self.key_prefix = key_prefix
        self.stop_code = stop_code
        self.clock = clock
        self.lock = threading.Lock()
        self.recent = create()
        self.recent_keys: dict[str, dict[str, Any]] = {}
        self.history: deque[tuple[float, tuple[dict[str, Any], dict[str, dict[str, Any]]]]] = \
            deque(maxlen=history_length)
        self.thread_ident: int | None = None
        self.thread_recent = create()
        self.thread_history: deque[tuple[float, dict[str, Any]]] = deque(maxlen=history_length)
        self._cycle_start = clock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def watch_thread(self, ident: int) -> None:
        """Sample thread ``ident`` too from now on (``profile(thread=True)``)."""
        self.thread_ident = ident

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and wait for it (at most ``timeout`` seconds)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while self.alive() and not self._stopped.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every thread watched; close the cycle if due."""
        running = self.running()
        ident = self.thread_ident
        now = self.clock()
        if running or ident is not None:
            frames = sys._current_frames()
            with self.lock:
                for tid, key in running.items():
                    frame = frames.get(tid)
                    if frame is None:
                        continue
                    stack = stack_of(frame, self.stop_code)
                    add_stack(self.recent, stack)
                    prefix = self.key_prefix(key)
                    tree = self.recent_keys.get(prefix)
                    if tree is None:
                        tree = self.recent_keys[prefix] = create()
                    add_stack(tree, stack)
                if ident is not None and ident in frames:
                    add_stack(self.thread_recent, stack_of(frames[ident]))
            del frames
        if now - self._cycle_start >= self.cycle:
            self._close_cycle(now)

    def _close_cycle(self, now: float) -> None:
        with self.lock:
            if self.recent["count"]:  # idle cycles are not kept
                self.history.append((now, (self.recent, self.recent_keys)))
                self.recent, self.recent_keys = create(), {}
            if self.thread_recent["count"]:
                self.thread_history.append((now, self.thread_recent))
                self.thread_recent = create()
            self._cycle_start = now

    def profile(self, start: float | None = None, stop: float | None = None,
                key: str | None = None, thread: bool = False) -> dict[str, Any]:
        """The merged call tree of the samples taken between ``start`` and
        ``stop`` (unix times; None: unbounded) of the task threads (of tasks
        whose key prefix is ``key``, if given) or, with ``thread``, of the
        thread given to ``watch_thread``."""
        with self.lock:
            if thread:
                trees = select(list(self.thread_history), start, stop)
                recent = self.thread_recent
            else:
                cycles = select(list(self.history), start, stop)
                if key is None:
                    trees = [whole for whole, _ in cycles]
                    recent = self.recent
                else:
                    trees = [by_key[key] for _, by_key in cycles if key in by_key]
                    recent = self.recent_keys.get(key, create())
            # the cycle still open covers [its start, now]
            if (stop is None or stop >= self._cycle_start) and (start is None or start <= self.clock()):
                trees.append(recent)
            return merge(*trees)
