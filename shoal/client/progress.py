"""``progress(futures)``: progress bars for work on the cluster.

What is counted follows dask's ``progress``: the futures given (found in
lists, dicts, ``as_completed`` objects and persisted dask collections) and
every task they depend on, as the scheduler knows them
(``shoal/scheduler/progress.py``): with ``complete=True`` all of that work,
with ``complete=False`` only what was not done yet when the bar started.
``multi=True`` draws one bar per group of keys (``group_by="prefix"``: the
function name in the key; or a callable of the key), ``multi=False`` one
bar for everything.

In a terminal the bars are drawn with tqdm and ``progress`` returns when
the work is done (or a task failed, as dask's bar stops).  tqdm rather than
rich: it is small and dependency-free, draws to any file object (``file=``,
which tests capture), and stacks several bars with ``position``; rich's
live display wants a console it owns and brings pygments and markdown-it
along.  In a Jupyter kernel ``progress`` returns at once with an ipywidgets
bar (``progress_widget.py``; ipywidgets is needed only there), updated from
a background thread, as dask's widget is.

Data flow::

    progress(...) --progress_start(keys, complete)--> scheduler: counted keys
    every ``interval`` --progress_poll--> keys done since the last poll
    --> Counts (one per group) --> tqdm bars | ipywidgets bars
"""

from __future__ import annotations

import ast
import sys
import time
import warnings
from collections.abc import Callable, Hashable
from typing import Any, TextIO

from shoal.client.structure import futures_of
from shoal.units import parse_timedelta

_WIDTH = 40


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


# -- grouping keys into bars ---------------------------------------------------------

_HEX = frozenset("0123456789abcdef")


def dask_key(key: str) -> Hashable:
    """The dask key a shoal key was made from: ``"('x', 0)"`` -> ``('x', 0)``."""
    if key.startswith("(") and key.endswith(")"):
        try:
            value = ast.literal_eval(key)
        except (ValueError, SyntaxError):
            return key
        if isinstance(value, tuple):
            return value
    return key


def key_group(key: str) -> str:
    """The name a key's bar goes under: its function name, without tokens
    and indices (``inc-9f8e...`` -> ``inc``, ``('sum-part-ab12..', 3)`` ->
    ``sum-part``), as dask's ``key_split``."""
    k = dask_key(key)
    name = str(k[0]) if isinstance(k, tuple) and k else str(k)
    words = name.split("-")
    while len(words) > 1 and words[-1] and set(words[-1].lower()) <= _HEX:
        words.pop()
    return "-".join(words) or name


def _grouper(group_by: Any) -> Callable[[str], Any]:
    if group_by in (None, "prefix"):
        return key_group
    if group_by == "spans":
        raise NotImplementedError("progress(group_by='spans'): shoal has no spans; group by "
                                  "'prefix' or pass a callable of the key")
    if callable(group_by):
        return lambda key: group_by(dask_key(key))
    raise ValueError("`group_by` should be 'spans', 'prefix', or a Callable")


def group_label(group: Any) -> str:
    """How a group is shown: a ``(name, id)`` tuple by its name, as dask's."""
    if isinstance(group, tuple) and group:
        group = group[0]
    return group.decode() if isinstance(group, bytes) else str(group)


# -- what the scheduler reports --------------------------------------------------------


class Counts:
    """Done and total per group for one ``progress`` call, kept up to date
    by asking the scheduler (``poll``); the bars only read it."""

    def __init__(self, client: Any, futures: list[Any], complete: bool, multi: bool,
                 group_by: Any) -> None:
        self.client = client
        self.futures = futures
        group = _grouper(group_by) if multi else (lambda key: "")
        self.start = time.monotonic()
        self.status = "finished"
        self.error: dict[str, str] | None = None
        self._id: int | None = None
        self._group_of: dict[str, Any] = {}
        self.total: dict[Any, int] = {}
        self.done: dict[Any, int] = {}
        if not futures:
            return
        answer = self._ask("progress_start", keys=[f.key for f in futures], complete=complete)
        self._id = answer["id"]
        remaining = set(answer["remaining"])
        for key in answer["all"]:
            g = self._group_of[key] = group(key)
            self.total[g] = self.total.get(g, 0) + 1
            self.done[g] = self.done.get(g, 0) + (key not in remaining)
        self.status = "running"
        self.poll()

    def _ask(self, method: str, **args: Any) -> Any:
        client = self.client
        if client.asynchronous:
            import asyncio

            if client._in_loop_thread():
                raise RuntimeError("progress() waits for the scheduler: with an asynchronous "
                                   "client call it from another thread, or use notebook=True")
            coro = client._request(method, **args)
            return asyncio.run_coroutine_threadsafe(coro, client.loop).result()
        return client._sync(client._request, method, **args)

    def groups(self) -> list[Any]:
        """Most numerous first, then by name (dask's order)."""
        return sorted(self.total, key=lambda g: (-self.total[g], group_label(g)))

    def poll(self) -> None:
        if self._id is None or self.status != "running":
            return
        answer = self._ask("progress_poll", id=self._id)
        for key in answer["done"]:
            g = self._group_of.get(key)
            if g is not None:
                self.done[g] += 1
        self.status = answer["status"]
        self.error = answer["error"]

    def futures_done(self) -> bool:
        return all(f.done() for f in self.futures)

    def wait(self, interval: float) -> None:
        """Until the next poll: ``interval`` seconds, or less if the futures
        finish first."""
        pending = [f._state for f in self.futures if not f.done()]
        if not pending:
            return
        try:
            self.client._wait_states(pending, interval)
        except TimeoutError:
            pass

    def stop(self) -> None:
        """Stop the scheduler's counting (if it is still on)."""
        if self._id is not None and self.status == "running":
            try:
                self._ask("progress_stop", id=self._id)
            except Exception:  # the client is closing: the scheduler drops it anyway
                pass
            self.status = "finished" if self.futures_done() else "stopped"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def format_time(seconds: float) -> str:
    """``1.7s``, ``2min  3.0s``, as dask shows durations."""
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h:2.0f}hr {m:2.0f}min {s:4.1f}s"
    if m:
        return f"{m:2.0f}min {s:4.1f}s"
    return f"{s:4.1f}s"


# -- the terminal ----------------------------------------------------------------------


def _text_bars(counts: Counts, interval: float, out: TextIO, width: int) -> None:
    """Draw until the work is done or failed; one tqdm bar per group."""
    from tqdm import tqdm

    class Bar(tqdm):  # type: ignore[misc]
        monitor_interval = 0  # no monitor thread: we update the bars ourselves

    groups = counts.groups()
    if not groups:
        out.write(f"\r[{'#' * width}] | 100% Completed | 0/0 | {format_time(0)}\n")
        out.flush()
        return
    label_width = max(len(group_label(g)) for g in groups)
    fmt = ("{desc}[{bar:" + str(width) + "}] | {percentage:3.0f}% Completed | "
           "{n_fmt}/{total_fmt} | {elapsed}{postfix}")
    bars = {
        g: Bar(total=counts.total[g], initial=counts.done[g], position=i, file=out, leave=True,
               desc=f"{group_label(g):<{label_width}} " if group_label(g) else "",
               bar_format=fmt, ascii=" #", mininterval=0, dynamic_ncols=False)
        for i, g in enumerate(groups)
    }
    try:
        while True:
            for g, bar in bars.items():
                bar.update(counts.done[g] - bar.n)
            if counts.status != "running":
                break
            if counts.futures_done():
                counts.poll()  # the last news: everything they needed is done too
                for g, bar in bars.items():
                    bar.update(counts.done[g] - bar.n)
                break
            counts.wait(interval)
            counts.poll()
        if counts.error is not None:
            key = counts.error["key"]
            g = counts._group_of.get(key)
            bars.get(g, next(iter(bars.values()))).set_postfix_str(
                f"failed: {key}: {counts.error['text']}", refresh=True)
    finally:
        for bar in reversed(list(bars.values())):
            bar.close()
        counts.stop()


# -- the entry point -------------------------------------------------------------------


def _collect(futures: tuple[Any, ...]) -> list[Any]:
    from shoal.client.waiting import as_completed

    found: dict[Any, None] = {}
    for obj in futures:
        items = obj._tracked() if isinstance(obj, as_completed) else [obj]
        for f in futures_of(items):
            found.setdefault(f)
    return list(found)


def progress(*futures: Any, notebook: bool | None = None, multi: bool = True,
             complete: bool = True, group_by: Any = "prefix", interval: Any = "100ms",
             file: TextIO | None = None, width: int = _WIDTH, **kwargs: Any) -> Any:
    """Track the progress of futures and of the tasks they need.

    futures: futures, lists/dicts of them, ``as_completed`` objects or
        persisted dask collections.
    notebook: draw an ipywidgets bar and return it at once (default: when
        running in a Jupyter kernel); otherwise draw text bars on ``file``
        (default stdout) and return when done.
    multi: one bar per group of keys (default), or one bar for all.
    complete: count all the work (default), or only what was not done yet.
    group_by: "prefix" (the function name in the key) or a callable of the
        key; dask's "spans" does not exist in shoal.
    interval: how often the bars are updated (seconds or "100ms").
    width: the width of a terminal bar, in characters.
    """
    if kwargs.get("func") is not None:
        warnings.warn("`func` is deprecated, use `group_by`", category=DeprecationWarning,
                      stacklevel=2)
        group_by = kwargs.pop("func")
    kwargs.pop("func", None)
    _refuse(kwargs)
    seconds = parse_timedelta(interval)
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    _grouper(group_by)  # a bad group_by is an error before anything is drawn
    found = _collect(futures)
    if notebook is None:
        notebook = _in_notebook()
    client = found[0].client if found else None
    if notebook:
        from shoal.client.progress_widget import ProgressWidget

        widget = ProgressWidget(interval=seconds)  # ipywidgets missing: ImportError before work
        widget.start(Counts(client, found, complete, multi, group_by))
        return widget
    counts = Counts(client, found, complete, multi, group_by)
    _text_bars(counts, seconds, file if file is not None else sys.stdout, width)
    return None


def _refuse(kwargs: dict[str, Any]) -> None:
    """dask's bar keywords shoal has no use for: an error unless harmless."""
    scheduler = kwargs.pop("scheduler", None)
    if scheduler is not None:
        raise NotImplementedError("progress(scheduler=...): shoal's bars follow the futures' "
                                  "own client")
    if kwargs.pop("loop", None) is not None:
        raise NotImplementedError("progress(loop=...): shoal draws from its own thread")
    if kwargs:
        raise TypeError(f"progress() got unexpected keyword arguments {sorted(kwargs)}")
