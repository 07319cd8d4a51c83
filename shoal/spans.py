"""``span``: name a group of tasks, as dask.distributed's ``span`` does.

    with span("load") as span_id:
        futures = client.map(load, files)
        with span("clean"):               # nested: the span ("load", "clean")
            cleaned = client.map(clean, futures)

Every task submitted inside the block (``submit``, ``map``, ``compute``,
``persist``) belongs to the innermost span.  The scheduler keeps a ``Span``
per id (``shoal/scheduler/spans.py``): its name (the tags of it and its
parents), parent, children, when it was first seen, when its tasks started
and stopped running, and its tasks' states; read it with
``client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.spans[span_id])``,
and the dashboard groups work by it.

Re-entering a span with the same tags makes a new span (a new id), as in dask.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

#: the spans entered here, outermost first: (names, ids)
_current: contextvars.ContextVar[tuple[tuple[str, ...], tuple[str, ...]] | None] = \
    contextvars.ContextVar("shoal_span", default=None)


@contextmanager
def span(*tags: str) -> Iterator[str]:
    """Tasks submitted inside belong to a span named ``tags`` (inside the
    spans already entered); yields its id."""
    if not tags:
        raise ValueError("Must specify at least one span tag")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"span tags are strings, got {tag!r}")
    names, ids = _current.get() or ((), ())
    new_ids = tuple(str(uuid.uuid4()) for _ in tags)
    token = _current.set((names + tags, ids + new_ids))
    try:
        yield new_ids[-1]
    finally:
        _current.reset(token)


def current() -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The spans entered here: ``(names, ids)``, outermost first; None outside."""
    return _current.get()
