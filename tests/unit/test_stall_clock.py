"""The send queue's stall rule (``shoal.comm.core.StallClock``): a peer
counts as reading when it takes 1 MiB, or all that waited, within the stall
timeout; a trickle does not keep a full queue alive."""

from __future__ import annotations

from shoal.comm.core import StallClock

MB = 1024 * 1024


def test_a_peer_that_takes_nothing_stalls_after_the_timeout() -> None:
    clock = StallClock(60.0)
    clock.waiting_from(100.0)
    assert not clock.stalled(160.0)
    assert clock.stalled(160.1)


def test_a_trickle_does_not_count_but_enough_bytes_do() -> None:
    clock = StallClock(60.0)
    clock.waiting_from(0.0)
    for t in range(1, 60):  # 16 KiB a second: under 1 MiB a minute
        clock.took(16 * 1024, drained=False, now=float(t))
    assert clock.stalled(60.5)
    clock.took(MB, drained=False, now=61.0)  # a real read: the clock starts again
    assert not clock.stalled(120.0) and clock.stalled(121.5)


def test_bytes_add_up_and_draining_the_queue_counts() -> None:
    clock = StallClock(10.0)
    clock.waiting_from(0.0)
    for t in range(1, 5):
        clock.took(MB // 4, drained=False, now=float(t))  # the fourth quarter makes 1 MiB
    assert not clock.stalled(13.5) and clock.stalled(14.5)
    clock.took(10, drained=True, now=20.0)  # all that waited was taken: reading
    assert not clock.stalled(29.0)
