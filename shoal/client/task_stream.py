"""``shoal.get_task_stream()``: the task runs of a block of code.

    with get_task_stream() as ts:
        client.gather(client.map(inc, range(10)))
    ts.data    # one record per task run (Client.get_task_stream's layout)

On entry each worker's position in its task stream is noted (a cursor: the
worker's identity and the sequence number of its next run); on exit every run
after those positions is collected, whatever the clocks of the machines say.
A worker that joined meanwhile counts from its first run.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class get_task_stream:  # dask's name, lower case: it reads like a function
    """Collect the task stream of a ``with`` (or ``async with``) block into
    ``.data``.  ``client``: the default client if None.  ``plot="save"``
    writes a standalone HTML chart to ``filename`` on exit (``.figure``
    stays None: shoal draws no bokeh figure; ``plot=True`` is not available)."""

    def __init__(self, client: Any = None, plot: bool | str = False,
                 filename: str = "task-stream.html") -> None:
        from shoal.client.diagnostics import check_plot

        check_plot(plot, "get_task_stream")
        if plot is True:
            raise NotImplementedError(
                "get_task_stream(plot=True) gives a bokeh figure in dask.distributed; shoal "
                "draws none: use plot='save' (with filename=) for a standalone HTML page")
        if client is None:
            from shoal.client.core import default_client

            client = default_client()
        self.client = client
        self.data: list[dict[str, Any]] = []
        self.figure: Any = None
        self._plot = plot
        self._filename = filename
        self._cursor: dict[str, Any] | None = None

    def __enter__(self) -> get_task_stream:
        if self.client.asynchronous:
            raise TypeError("get_task_stream() of an asynchronous client: use 'async with'")
        self._cursor = self.client._sync(self.client._request, "task_stream_cursor")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client._sync(self._collect)

    async def __aenter__(self) -> get_task_stream:
        self._cursor = await self.client._request("task_stream_cursor")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._collect()

    async def _collect(self) -> None:
        records = await self.client._request("get_task_stream", since=self._cursor or {})
        self.data.extend(records)
        if self._plot == "save":
            from shoal.client.diagnostics import save_task_stream

            await save_task_stream(records, self._filename)
