"""``Status``: the states a client, cluster, scheduler or worker can be in,
as dask.distributed names them.

shoal's objects keep their status as a plain string (``client.status ==
"running"``); ``Status`` members are strings too (a ``str`` enum), so
``client.status == Status.running`` holds, as in dask.
"""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    undefined = "undefined"
    created = "created"
    init = "init"
    starting = "starting"
    running = "running"
    paused = "paused"
    stopping = "stopping"
    stopped = "stopped"
    closing = "closing"
    closing_gracefully = "closing_gracefully"
    closed = "closed"
    failed = "failed"
    dont_reply = "dont_reply"

    def __str__(self) -> str:
        return self.value
