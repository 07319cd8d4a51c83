"""Cancelling and retrying futures: ``cancel`` and ``retry``, as methods of
``shoal.Client``.

A cancel marks the futures cancelled here at once (with the reason), then
tells the scheduler, and, as in dask.distributed, returns once the scheduler
has taken it in (a barrier request): no task it cancelled starts after that.
"""

from __future__ import annotations

from shoal.client.core import _done_coroutine
from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from typing import Any


class Cancelling(MixinBase):
    def cancel(self, futures: Any, asynchronous: bool | None = None, force: bool = False,
               reason: str | None = None, msg: str | None = None) -> Any:
        """Cancel futures (and what depends on them); running tasks finish but
        their results are dropped.  ``force``: for every client holding them,
        not only this one.  ``result()`` then raises ``FutureCancelledError``
        with ``reason`` and ``msg``.  Returns (or, asynchronous, its awaitable
        ends) once the scheduler has taken the cancellation in, as in
        dask.distributed: no task it cancelled starts after that."""
        from shoal.client.future import CANCELLED
        from shoal.client.structure import futures_in
        from shoal.errors import FutureCancelledError
        from shoal.protocol import messages as m

        found = list(futures_in(futures))
        keys = list(dict.fromkeys(f.key for f in found))
        with self._lock:
            for f in found:
                st = f._state
                if st.status != CANCELLED:
                    st.status = CANCELLED
                    st.value = None
                    st.exception = FutureCancelledError(st.key, reason, msg)
                    self._wake(st)
            for key in keys:  # the scheduler answers each with TasksCancelled
                self._cancelling[key] = self._cancelling.get(key, 0) + 1
        if keys:
            self._send(m.CancelKeys(keys, force, reason or "", msg or ""))
        if self.asynchronous:
            return self._scheduler_caught_up() if keys else _done_coroutine()
        if keys and not self._in_loop_thread() and self.status == "running":
            self._sync(self._scheduler_caught_up)
        return _done_coroutine() if asynchronous else None

    async def _scheduler_caught_up(self) -> None:
        """Wait (at most the client's timeout) until the scheduler has handled
        what this client sent so far.  A lost connection ends the wait: the
        futures are cancelled here already and the scheduler forgets them."""
        from shoal.errors import CommClosedError

        limit = max(60.0, self.timeout)
        try:
            await self._request("barrier", _timeout=limit)
        except CommClosedError:
            pass
        except TimeoutError:
            raise TimeoutError(f"the scheduler did not confirm the cancellation within {limit:g} s "
                               "(it is still under way)") from None

    def retry(self, futures: Any, asynchronous: bool | None = None) -> Any:
        """Run failed futures again."""
        from shoal.client.future import ERROR, PENDING
        from shoal.client.structure import futures_in
        from shoal.protocol import messages as m

        found = list(futures_in(futures))
        keys = []
        with self._lock:
            for f in found:
                st = f._state
                if st.status == ERROR:
                    st.status = PENDING
                    st.exception = None
                    keys.append(f.key)
        if keys:
            self._send(m.RetryKeys(keys))
        if self.asynchronous or asynchronous:
            return _done_coroutine()
        return None

