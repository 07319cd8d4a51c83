"""The last submissions sent, kept to send again after a reconnection.

What a client wrote to a connection that then broke may never have reached
the scheduler, so ``reconnect.py`` sends the last few submission messages
again first (the scheduler takes a submission of a key it knows as a
request for that key's state).  Keeping them must not keep a user's data
alive: ``submit(f, big_array)`` pickles the array's memory out of band,
without a copy, so the kept message holds the array itself.  A task whose
pickled arguments are large ("heavy") therefore leaves the buffer as soon
as its key is released: nobody wants it again, and its arguments are freed
when the user lets go of them.

Data flow::

    ClientCore._send --sent(msg)--> messages (the last ``length``)
                                    heavy[key] = (message, index of its spec)
    ClientCore._release_key --released(key)--> that spec's place emptied
    reconnect --to_resend()--> copies without the emptied places

Pure: no I/O, no clock.  Called with the client's lock held.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from shoal.protocol import messages as m

#: a task whose pickled arguments take at least this many bytes (or hold an
#: out-of-band buffer) leaves the buffer once its key is released
HEAVY_ARGS_BYTES = 64 * 1024

#: the message types a broken connection may have lost and that are sent again
RESENT = (m.SubmitTasks, m.DataScattered, m.FireAndForget)


class ResendBuffer:
    """The last ``length`` messages of the ``RESENT`` types sent."""

    def __init__(self, length: int = 16) -> None:
        self.length = length
        self.messages: deque[Any] = deque()
        # key -> (the SubmitTasks holding its heavy spec, the spec's index)
        self.heavy: dict[str, tuple[Any, int]] = {}

    def sent(self, msg: Any) -> None:
        """``msg`` was written to the connection (or was to be)."""
        if type(msg) not in RESENT:
            return
        messages = self.messages
        if len(messages) >= self.length:
            self._forget(messages.popleft())
        messages.append(msg)
        if type(msg) is m.SubmitTasks:
            heavy = self.heavy
            for i, spec in enumerate(msg.tasks):
                args = spec.args
                if args.buffers or len(args.data) >= HEAVY_ARGS_BYTES:
                    heavy[spec.key] = (msg, i)

    def released(self, key: str) -> None:
        """The client let go of ``key``: its heavy spec, if kept, goes."""
        entry = self.heavy.pop(key, None)
        if entry is not None:
            msg, i = entry
            msg.tasks[i] = None  # the place stays: the other indices hold

    def to_resend(self) -> list[Any]:
        """The kept messages, without the specs released meanwhile: always
        copies of the submissions, so that a release while they wait to be
        sent again cannot change what will be sent."""
        out = []
        for msg in self.messages:
            if type(msg) is m.SubmitTasks:
                tasks = [s for s in msg.tasks if s is not None]
                if not tasks and not msg.functions:
                    continue
                msg = msgspec.structs.replace(msg, tasks=tasks)
            out.append(msg)
        return out

    def _forget(self, msg: Any) -> None:
        if self.heavy and type(msg) is m.SubmitTasks:
            heavy = self.heavy
            for spec in msg.tasks:
                if spec is not None:
                    entry = heavy.get(spec.key)
                    if entry is not None and entry[0] is msg:
                        del heavy[spec.key]

    def __len__(self) -> int:
        return len(self.messages)
