"""The busy-poll window (shoal/comm/spin.py): a loop keeps polling for a
window after activity and then sleeps again; a waiting thread polls before
it blocks.  No timing is asserted, only what happens and that it ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from shoal.comm import spin


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.001)


def test_a_touched_loop_polls_then_stops_by_itself() -> None:
    loop = asyncio.new_event_loop()
    try:
        turns = 0

        class Counting(spin.LoopPoller):
            def _turn(self) -> None:
                nonlocal turns
                turns += 1
                super()._turn()

        poller = Counting(loop, window=0.005)
        poller.touch()
        assert poller.active
        loop.run_until_complete(_until(lambda: not poller.active))
        assert turns > 1  # it kept re-queueing itself while the window lasted
        settled = turns
        loop.run_until_complete(asyncio.sleep(0.02))
        assert turns == settled  # and nothing is queued once it stopped
        # that window caught nothing: the next chance is skipped, the one after polls
        poller.touch()
        assert not poller.active
        poller.touch()
        assert poller.active
        loop.run_until_complete(_until(lambda: not poller.active))
        assert turns > settled
    finally:
        loop.close()


def test_a_message_caught_while_polling_keeps_the_loop_polling() -> None:
    loop = asyncio.new_event_loop()
    try:
        poller = spin.LoopPoller(loop, window=0.005)
        poller.touch()
        loop.call_soon(poller.touch)  # a reply that arrives inside the window
        loop.run_until_complete(_until(lambda: not poller.active))
        assert poller.backoff.misses == 0
        poller.touch()  # so the next message polls again at once
        assert poller.active
        loop.run_until_complete(_until(lambda: not poller.active))
    finally:
        loop.close()


def test_backoff_doubles_the_skipped_chances_and_one_catch_ends_it() -> None:
    b = spin.Backoff()
    assert b.should_poll()
    for misses in range(1, spin.MAX_BACKOFF + 3):
        b.missed()
        skipped = 0
        while not b.should_poll():
            skipped += 1
        assert skipped == 2 ** min(misses, spin.MAX_BACKOFF) - 1
    b.missed()
    b.caught()
    assert b.should_poll() and b.should_poll()


def test_a_zero_window_never_queues_anything() -> None:
    loop = asyncio.new_event_loop()
    try:
        poller = spin.LoopPoller(loop, window=0.0)
        poller.touch()
        assert not poller.active
    finally:
        loop.close()


def test_touch_follows_the_configured_window(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.new_event_loop()
    try:
        monkeypatch.setattr(spin, "WINDOW", 0.0)
        monkeypatch.setattr(spin._local, "poller", None, raising=False)
        spin.touch(loop)
        assert spin._local.poller is None  # off: not even a poller is made
        spin.set_window(0.002)
        spin.touch(loop)
        poller = spin._local.poller
        assert poller.loop is loop and poller.active
        loop.run_until_complete(_until(lambda: not poller.active))
    finally:
        loop.close()


def test_spin_until_sees_what_another_thread_does() -> None:
    event = threading.Event()
    timer = threading.Timer(0.01, event.set)
    timer.start()
    try:
        assert spin.spin_until(event.is_set, window=30.0)
    finally:
        timer.cancel()


def test_spin_until_gives_up_after_its_window() -> None:
    calls = 0

    def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    assert not spin.spin_until(never, window=0.001)
    assert calls >= 1
    assert spin.spin_until(lambda: True, window=0.0)
    assert not spin.spin_until(lambda: False, window=0.0)


def test_a_poll_with_no_time_to_wait_does_not_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spin, "WINDOW", 0.001)
    monkeypatch.setattr(spin, "_thread_backoff", spin.Backoff())
    calls = 0

    def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    spin.spin_if_waiting(never, timeout=0)
    assert calls == 0
    spin.spin_if_waiting(never, timeout=None)
    assert calls >= 1


def test_the_window_comes_from_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal import config

    with config.set({"comm.busy-poll": "250us"}):
        assert spin.configured_window() == pytest.approx(250e-6)
    monkeypatch.setenv("SHOAL_POLL_US", "-5")  # the old variable still works
    config.refresh()
    try:
        assert spin.configured_window() == 0.0
        monkeypatch.setenv("SHOAL_POLL_US", "fast")
        with pytest.raises(ValueError, match="SHOAL_POLL_US"):
            config.refresh()
    finally:
        monkeypatch.delenv("SHOAL_POLL_US")
        config.refresh()
