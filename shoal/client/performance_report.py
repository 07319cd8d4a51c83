"""``shoal.performance_report``: a standalone HTML page about a block of code.

    with performance_report(filename="report.html"):
        client.gather(client.map(inc, range(1000)))

On entry the workers' task-stream positions are noted (as
``get_task_stream`` does) and the time; on exit the runs since, the workers'
profile over the block and ``scheduler_info()`` are gathered and the page
written (``shoal.diagnostics.report``): summary numbers, time per function,
the task stream, the profile as a flame graph, and the code of the block.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: dask's ``mode`` values (bokeh's resources); shoal's page needs none
_MODES = (None, "inline", "cdn", "server", "server-dev", "relative", "relative-dev", "absolute",
          "absolute-dev")


class performance_report:  # dask's name, lower case: it reads like a function
    """Write an HTML report of the ``with`` (or ``async with``) block to
    ``filename``.  ``stacklevel``: whose code the report shows (1: the
    block's).  ``mode``: accepted for dask's signature; shoal's page embeds
    no JavaScript library, so it is the same self-contained file whatever
    the mode.  ``storage_options`` (remote file systems) is not supported."""

    def __init__(self, filename: str = "dask-report.html", stacklevel: int = 1,
                 mode: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        if storage_options:
            raise NotImplementedError("performance_report(storage_options=...): shoal writes "
                                      "local files only")
        if "://" in str(filename):
            raise NotImplementedError(f"performance_report({filename!r}): shoal writes local "
                                      "files only, not URLs")
        if mode not in _MODES:
            raise ValueError(f"performance_report: mode must be one of {_MODES[1:]} or None, "
                             f"got {mode!r}")
        if not isinstance(stacklevel, int) or stacklevel < 1:
            raise ValueError(f"stacklevel must be a positive int, got {stacklevel!r}")
        self.filename = str(filename)
        self.stacklevel = stacklevel
        self.mode = mode
        self._client: Any = None
        self._cursor: Any = None
        self._start = 0.0
        self._where: tuple[str, int] | None = None

    def _client_now(self) -> Any:
        from shoal.client.core import default_client

        return default_client()

    def _note_caller(self, depth: int) -> None:
        import sys

        try:
            frame = sys._getframe(depth + self.stacklevel)
        except ValueError:
            return
        self._where = (frame.f_code.co_filename, frame.f_lineno)

    def _code(self) -> str:
        import linecache

        if self._where is None:
            return ""
        filename, first = self._where
        lines = []
        indent: int | None = None
        for n in range(first, first + 200):
            line = linecache.getline(filename, n)
            if not line:
                break
            stripped = line.strip()
            depth = len(line) - len(line.lstrip())
            if n > first and stripped and indent is not None and depth <= indent:
                break
            if n == first:
                indent = depth
            lines.append(line.rstrip("\n"))
        return "\n".join(lines)

    def __enter__(self) -> performance_report:
        import time

        self._client = self._client_now()
        if self._client.asynchronous:
            raise TypeError("performance_report() of an asynchronous client: use 'async with'")
        self._note_caller(1)
        self._cursor = self._client._sync(self._client._request, "task_stream_cursor")
        self._start = time.time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client._sync(self._write)

    async def __aenter__(self) -> performance_report:
        import time

        self._client = self._client_now()
        self._note_caller(1)
        self._cursor = await self._client._request("task_stream_cursor")
        self._start = time.time()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._write()

    async def _write(self) -> None:
        import asyncio
        import time

        from shoal import config
        from shoal.client.diagnostics import write_text
        from shoal.diagnostics.report import report
        from shoal.scheduler.records import key_prefix

        stop = time.time()
        client = self._client
        records = await client._request("get_task_stream", since=self._cursor or {})
        profile = await client._request("profile", key=None, start=self._start, stop=None,
                                        workers=None, merge_workers=True, server=False,
                                        scheduler=False)
        info = await client._request("scheduler_info", n_workers=-1)
        page = report(records, profile, info, self._start, stop, self._code(), key_prefix,
                      config.duration("worker.profile.interval") or 0.01)
        await asyncio.to_thread(write_text, self.filename, page)
