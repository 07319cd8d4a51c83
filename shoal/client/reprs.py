"""How a client shows itself: ``repr(client)``, its notebook HTML (dask's
layout, with ``shoal.widgets``' templates) and ``client.dashboard_link``.

A mixin of ``shoal.Client``.  The sizes come from ``scheduler_info()``,
asked at most every few seconds and for at most a second (a repr must not
hang on a busy scheduler); an asynchronous client shows what it knows.
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from typing import Any

#: seconds a scheduler_info() answer is reused by the reprs
_REUSE = 2.0


class Reprs(MixinBase):
    @property
    def dashboard_link(self) -> str | None:
        """The address of the cluster's dashboard (its status page), if it
        has one: the cluster object's, else the one the scheduler gave."""
        link = getattr(self.cluster, "dashboard_link", None)
        return link or getattr(self, "_dashboard_link", None)

    def _repr_info(self) -> dict[str, Any] | None:
        """``scheduler_info(n_workers=-1)``, recent enough, or None."""
        import time

        if self.status != "running":
            return None
        cached = getattr(self, "_repr_cache", None)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _REUSE:
            return cached[1]  # type: ignore[no-any-return]
        if self.asynchronous:
            return cached[1] if cached is not None else None
        try:
            info = self._sync(self._request, "scheduler_info", n_workers=-1, callback_timeout=1.0)
        except Exception:
            return cached[1] if cached is not None else None
        self._repr_cache = (now, info)
        return info  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        if self.status != "running":
            return f"<Client: {self.status}>"
        info = self._repr_info()
        if info is None:
            return f"<Client: {self.scheduler_address!r} workers={len(self._workers)}>"
        from shoal.units import format_bytes
        from shoal.widgets.reprs import totals

        n, threads, memory = totals(info)
        text = f"<Client: {self.scheduler_address!r} processes={n} threads={threads}"
        return text + (f", memory={format_bytes(memory)}>" if memory else ">")

    def _repr_html_(self) -> str:
        from shoal.widgets.reprs import client_html

        return client_html(f"Client-{self.id}" if getattr(self, "id", "") else "Client", self.cluster,
                           self.dashboard_link, self.status, self._repr_info())
