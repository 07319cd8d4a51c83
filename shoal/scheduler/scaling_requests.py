"""The questions a cluster manager asks while it scales: how many workers
the work wants (``adaptive_target``) and which workers could go
(``workers_to_close``), as dask's scheduler answers them for
``distributed.deploy.Adaptive``.

A scheduler extension (see ``server.py``): each ``rpc_<method>`` answers the
request of that name.  Read-only: the decisions are in ``scaling.py`` and
``replicas.py`` (pure); retiring the chosen workers is ``retire_workers``
(``cluster_control.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.scheduler import scaling

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer


class ScalingRequests:
    def __init__(self, server: SchedulerServer) -> None:
        self.server = server

    async def rpc_adaptive_target(self, client_id: str, target_duration: Any = None) -> int:
        """The number of workers the current work wants (``scaling.py``);
        ``target_duration``: how long the backlog should take (seconds or
        "5s"; default: setting ``adaptive.target-duration``)."""
        from shoal import config
        from shoal.units import parse_timedelta

        if target_duration is None:
            target_duration = config.get("adaptive.target-duration")
        return scaling.adaptive_target(self.server.state, parse_timedelta(target_duration))

    async def rpc_workers_to_close(self, client_id: str, **kwargs: Any) -> list[Any]:
        """Workers that could retire cheaply (dask's ``workers_to_close``:
        ``memory_ratio``, ``n``, ``minimum``, ``target``, ``attribute``)."""
        return scaling.close_candidates(self.server.state, **kwargs)
