"""``progress(futures)``: a progress bar.

In a terminal it draws a text bar and returns when every future is done.  In
a Jupyter kernel it shows a bar below the cell and returns at once (updating
the bar from a background thread), as dask's does.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from shoal.client.structure import futures_in

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


def _counts(futures: list[Any]) -> tuple[int, int]:
    done = sum(1 for f in futures if f.done())
    errors = sum(1 for f in futures if f.status in ("error", "cancelled"))
    return done, errors


def _text(done: int, errors: int, total: int, elapsed: float) -> str:
    filled = int(_WIDTH * done / total) if total else _WIDTH
    bar = "#" * filled + " " * (_WIDTH - filled)
    extra = f", {errors} failed" if errors else ""
    return f"[{bar}] | {100 * done // max(total, 1):3d}% Completed | {done}/{total}{extra} | {elapsed:5.1f}s"


def progress(*futures: Any, notebook: bool | None = None, multi: bool = False,
             complete: bool = True, interval: float = 0.1, file: TextIO | None = None) -> Any:
    """Show how many of these futures are done."""
    # one bar entry per task, as dask's progress counts keys (futures of one
    # key are equal tasks, though distinct futures)
    found = list({f.key: f for obj in futures for f in futures_in(obj)}.values())
    if notebook is None:
        notebook = _in_notebook()
    if notebook:
        return _notebook_progress(found, interval)
    out = file if file is not None else sys.stdout
    start = time.monotonic()
    total = len(found)
    while True:
        done, errors = _counts(found)
        out.write("\r" + _text(done, errors, total, time.monotonic() - start))
        out.flush()
        if done == total:
            break
        client = next((f.client for f in found if not f.done()), None)
        if client is not None:
            try:
                client._wait_states([f._state for f in found if not f.done()], interval, count=1)
            except TimeoutError:
                pass
    out.write("\n")
    out.flush()
    return None


def _notebook_progress(found: list[Any], interval: float) -> Any:
    from IPython.display import HTML, display

    start = time.monotonic()
    handle = display(HTML("<pre>starting…</pre>"), display_id=True)

    def update() -> None:
        while True:
            done, errors = _counts(found)
            text = _text(done, errors, len(found), time.monotonic() - start)
            handle.update(HTML(f"<pre>{text}</pre>"))
            if done == len(found):
                return
            time.sleep(interval)

    threading.Thread(target=update, name="shoal-progress", daemon=True).start()
    return None
