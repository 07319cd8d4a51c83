"""The notebook face of ``progress``: ipywidgets bars, one per group of
keys, updated from a background thread while the cell returns at once.

The layout is dask's ``MultiProgressWidget``: a line with the elapsed time
(then "Finished" or the exception), and per group ``done / total``, a
``FloatProgress`` bar from 0 to 1 and the group's name; a bar turns green
when its group is done and red if the work failed.  ipywidgets is imported
only when such a bar is made.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

from shoal.client.progress import format_time, group_label

if TYPE_CHECKING:
    from shoal.client.progress import Counts


def _require_ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("progress(notebook=True) draws an ipywidgets bar: "
                          "pip install ipywidgets") from None
    return ipywidgets


class ProgressWidget:
    """What ``progress(..., notebook=True)`` returns; displaying it (the last
    expression of a cell) shows ``widget``.  ``bars``, ``bar_texts`` and
    ``bar_labels`` map each group to its ``FloatProgress`` and ``HTML``."""

    def __init__(self, interval: float) -> None:
        widgets = _require_ipywidgets()
        self.interval = interval
        self.elapsed_time = widgets.HTML("")
        self.bars: dict[Any, Any] = {}
        self.bar_texts: dict[Any, Any] = {}
        self.bar_labels: dict[Any, Any] = {}
        self.widget = widgets.VBox([self.elapsed_time])
        self.status = "starting"
        self._counts: Counts | None = None
        self._thread: threading.Thread | None = None

    def start(self, counts: Counts) -> None:
        """Lay out one bar per group and keep them updated until the work
        is done (from a daemon thread)."""
        widgets = _require_ipywidgets()
        self._counts = counts
        rows = []
        for g in counts.groups():
            self.bars[g] = widgets.FloatProgress(min=0, max=1, description="")
            self.bar_texts[g] = widgets.HTML("")
            self.bar_labels[g] = widgets.HTML(
                '<div style="padding: 0px 10px 0px 10px; text-align:left; word-wrap: '
                f'break-word;">{html.escape(group_label(g))}</div>')
            rows.append(widgets.HBox([self.bar_texts[g], self.bars[g], self.bar_labels[g]]))
        self.widget.children = (self.elapsed_time, widgets.VBox(rows))
        self._draw()
        self._thread = threading.Thread(target=self._follow, name="shoal-progress", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        counts = self._counts
        assert counts is not None
        try:
            while counts.status == "running":
                if counts.futures_done():
                    counts.poll()
                    break
                counts.wait(self.interval)
                counts.poll()
                self._draw()
        except Exception as exc:  # the client closed under us: say so, stop
            counts.status, counts.error = "error", {"key": "", "text": repr(exc)}
        finally:
            counts.stop()
            self._draw()

    def _draw(self) -> None:
        counts = self._counts
        assert counts is not None
        for g, bar in self.bars.items():
            total, done = counts.total[g], counts.done[g]
            bar.value = done / total if total else 1.0
            self.bar_texts[g].value = ('<div style="padding: 0px 10px 0px 10px; '
                                       f'text-align: right">{done} / {total}</div>')
        elapsed = format_time(counts.elapsed)
        if counts.status == "running":
            text = f"<b>Computing:</b> {elapsed}"
        elif counts.error is not None:
            text = (f"<b>Exception</b> <tt>{html.escape(counts.error['text'])}</tt> "
                    f"in {html.escape(counts.error['key'])}: {elapsed}")
            for g, bar in self.bars.items():
                bar.bar_style = "success" if counts.done[g] == counts.total[g] else "danger"
        else:
            text = f"<b>Finished:</b> {elapsed if self.bars else 'no tasks given'}"
            for bar in self.bars.values():
                bar.bar_style = "success"
        self.elapsed_time.value = f'<div style="padding: 0px 10px 5px 10px">{text}</div>'
        self.status = counts.status

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import display

        display(self.widget, **kwargs)
