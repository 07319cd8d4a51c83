"""The event loop that synchronous clients (and in-process clusters) run on.

One daemon thread per process runs one event loop (uvloop where available),
shared by every synchronous ``Client`` and ``LocalCluster(processes=False)``.
It is reference counted: the last user to release it stops and joins the
thread, so closing every client leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shoal.comm.spin import spin_if_waiting

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()


def running_on(loop: asyncio.AbstractEventLoop | None) -> bool:
    """True when called from a coroutine or callback running on ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class LoopRunner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the loop is not running"
        return self._loop

    def acquire(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            self._users += 1
            if self._loop is None:
                loop = new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()
                    # cancel what is left and close
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for t in pending:
                        t.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

                thread = threading.Thread(target=run, name="shoal-loop", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._loop is None:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def run_sync(
        self, func: Callable[..., Awaitable[T]], *args: Any, _timeout: float | None = None, **kwargs: Any
    ) -> T:
        """Run ``func(*args, **kwargs)`` on the loop and wait (at most
        ``_timeout`` seconds) for its result; ``kwargs`` all go to ``func``."""
        return self.wait(self.start(func, *args, **kwargs), _timeout)

    def start(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
              ) -> concurrent.futures.Future[T]:
        """Start ``func(*args, **kwargs)`` on the loop; ``wait`` for it later."""
        if self.in_loop_thread():
            raise RuntimeError(
                "a synchronous shoal call was made from the event loop thread; "
                "use an asynchronous client (asynchronous=True) and await it"
            )

        async def runner() -> T:
            return await func(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(runner(), self.loop)

    @staticmethod
    def wait(fut: concurrent.futures.Future[T], timeout: float | None) -> T:
        """The result of what ``start`` started (cancelled after ``timeout`` s)."""
        spin_if_waiting(fut.done, timeout)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.done():
                raise  # func itself raised TimeoutError (the same class since 3.11)
            fut.cancel()
            raise TimeoutError(f"timed out after {timeout} s") from None


_runner = LoopRunner()


def get_loop_runner() -> LoopRunner:
    return _runner


def sync(loop: asyncio.AbstractEventLoop, func: Callable[..., Awaitable[T]], *args: Any,
         callback_timeout: float | str | None = None, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` on ``loop``, an event loop running in
    another thread (such as ``client.loop``), and wait for its result, at
    most ``callback_timeout`` (dask.distributed's ``sync``)."""
    from shoal.units import parse_timedelta

    if loop.is_closed():
        raise RuntimeError("the event loop is closed")
    if running_on(loop):
        raise RuntimeError("sync() was called from the loop it would wait for; await the "
                           "coroutine instead")
    timeout = None if callback_timeout is None else parse_timedelta(callback_timeout)

    async def runner() -> T:
        return await func(*args, **kwargs)

    return LoopRunner.wait(asyncio.run_coroutine_threadsafe(runner(), loop), timeout)
