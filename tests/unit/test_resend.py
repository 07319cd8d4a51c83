"""The client's resend buffer (``shoal/client/resend.py``): the last
submissions, kept for a reconnection, never keeping a released task's large
arguments alive."""

from __future__ import annotations

import weakref

import numpy as np

from shoal.client.resend import HEAVY_ARGS_BYTES, ResendBuffer
from shoal.protocol import messages as m
from shoal.protocol.serialize import dumps


def _spec(key: str, arg: object) -> m.TaskSpec:
    return m.TaskSpec(key, b"f", dumps(((arg,), {})))


def test_keeps_the_last_submissions_and_only_those_that_may_be_lost() -> None:
    buf = ResendBuffer(length=3)
    for i in range(5):
        buf.sent(m.SubmitTasks([_spec(f"k{i}", i)]))
    buf.sent(m.ReleaseKeys(["k0"]))  # not resent: releases are answered
    buf.sent(m.FireAndForget(["k4"]))
    resent = buf.to_resend()
    assert [type(x).__name__ for x in resent] == ["SubmitTasks", "SubmitTasks", "FireAndForget"]
    assert [x.tasks[0].key for x in resent[:2]] == ["k3", "k4"]
    assert len(buf) == 3


def test_a_released_heavy_task_leaves_and_frees_its_arguments() -> None:
    big = np.ones(1 << 20)
    ref = weakref.ref(big)
    small = "x" * (HEAVY_ARGS_BYTES // 2)
    inband = b"y" * HEAVY_ARGS_BYTES  # large but pickled in band: heavy too
    buf = ResendBuffer()
    buf.sent(m.SubmitTasks([_spec("big", big), _spec("small", small), _spec("inband", inband)],
                           [m.FunctionDef(b"f", b"blob")]))
    assert set(buf.heavy) == {"big", "inband"}
    del big
    assert ref() is not None  # the kept message holds the array (pickled out of band)
    buf.released("big")
    assert ref() is None  # freed with the user's last reference
    buf.released("small")  # light: stays, harmless to send again
    buf.released("inband")
    [msg] = buf.to_resend()
    assert [s.key for s in msg.tasks] == ["small"] and msg.functions
    # a copy: emptying places later does not change what was handed out
    buf.sent(m.SubmitTasks([_spec("later", np.ones(1 << 18))]))
    copy = buf.to_resend()[1]
    buf.released("later")
    assert [s.key for s in copy.tasks] == ["later"]
    assert [len(x.tasks) for x in buf.to_resend()] == [1]  # "later" left, its message with it


def test_a_message_pushed_out_takes_its_heavy_keys_with_it() -> None:
    buf = ResendBuffer(length=1)
    buf.sent(m.SubmitTasks([_spec("a", np.ones(1 << 18))]))
    buf.sent(m.SubmitTasks([_spec("b", 1)]))
    assert buf.heavy == {}
    buf.released("a")  # nothing kept: nothing to do
    assert [x.tasks[0].key for x in buf.to_resend()] == ["b"]
