"""The dashboard's link to the scheduler: it asks for views while someone
looks, keeps the latest, and pushes each update to every open page.

The dashboard process is a client of the scheduler (an asynchronous
``shoal.Client``).  Pages subscribe to *topics*:

    status   the workers, their totals, tasks by function and state
    stream   the task runs since the last update (sampled on a busy cluster)
    logs     each worker's recent log lines
    graph    the task graph (grouped by function when large)

Each update interval, the feed asks the scheduler once for each topic that
at least one page wants, encodes the update as JSON once, and hands the
same text to every page: three tabs cost the scheduler what one does.  No
page open: no request at all (``/metrics`` and the JSON API ask on their own).

Data flow::

    scheduler --dashboard_snapshot / dashboard_task_stream / worker_logs / dashboard_graph-->
    Feed.poll --JSON text--> each subscriber's queue --> its websocket
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

logger = logging.getLogger("shoal.dashboard")

TOPICS = frozenset({"status", "stream", "logs", "graph"})


class Subscriber:
    """One open page: the topics it wants and the updates waiting for it
    (a slow page loses the oldest, never slows the others)."""

    def __init__(self, topics: frozenset[str], depth: int = 8) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[str] = asyncio.Queue(depth)

    def offer(self, text: str) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(text)


class Feed:
    def __init__(self, scheduler_address: str, security: Any = None) -> None:
        from shoal import config

        self.scheduler_address = scheduler_address
        self.security = security
        self.interval = config.duration("dashboard.update-interval") or 0.5
        self.stream_count = int(config.get("dashboard.task-stream-count"))
        self.graph_limit = int(config.get("dashboard.graph-limit"))
        self.log_lines = int(config.get("dashboard.log-lines"))
        self.client: Any = None
        self.subscribers: set[Subscriber] = set()
        self.status: dict[str, Any] | None = None
        self.status_at = 0.0
        self.stream: deque[dict[str, Any]] = deque(maxlen=5000)  # recent runs, for the JSON API
        self.logs: dict[str, list[tuple[str, str]]] = {}
        self.logs_at = 0.0
        self.graph: dict[str, Any] | None = None
        self._cursors: dict[str, Any] = {}
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> Feed:
        from shoal import Client

        self.client = await Client(self.scheduler_address, asynchronous=True, set_as_default=False,
                                   name="dashboard", security=self.security)
        self._runner = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        if self.client is not None:
            await self.client.close()

    def connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, topics: frozenset[str]) -> Subscriber:
        sub = Subscriber(topics)
        self.subscribers.add(sub)
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def wanted(self) -> set[str]:
        return {t for sub in self.subscribers for t in sub.topics}

    async def _run(self) -> None:
        while True:
            if not self.subscribers:
                self._wake.clear()
                await self._wake.wait()
            started = time.monotonic()
            try:
                await self.update(self.wanted())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the scheduler busy or gone: the next turn tells
                logger.warning("dashboard update failed: %s: %s", type(e).__name__, e)
                if not self.connected():
                    return
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def update(self, topics: set[str]) -> None:
        """Ask for ``topics`` and push one update to the pages that want them."""
        message: dict[str, Any] = {"type": "update", "time": time.time()}
        if "status" in topics:
            message["status"] = await self.get_status()
        if "stream" in topics:
            message["stream"] = await self.get_stream()
        if "logs" in topics and time.monotonic() - self.logs_at >= 4 * self.interval:
            message["logs"] = await self.get_logs()
        if "graph" in topics:
            message["graph"] = await self.get_graph()
        self.publish(message)

    def publish(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        for sub in list(self.subscribers):
            if sub.topics & message.keys():
                sub.offer(text)

    # ------------------------------------------------------------------ asking the scheduler

    async def get_status(self, max_age: float = 0.0) -> dict[str, Any]:
        """The latest status view, asked again if older than ``max_age``."""
        async with self._lock:
            if self.status is None or time.monotonic() - self.status_at > max_age:
                self.status = await self.client._request("dashboard_snapshot", tasks=True)
                self.status_at = time.monotonic()
            return self.status

    async def get_stream(self) -> list[dict[str, Any]]:
        """The task runs since the last call (the newest ones per worker)."""
        answer = await self.client._request("dashboard_task_stream", cursors=self._cursors,
                                            count=self.stream_count)
        from shoal.dashboard.views import stream_records

        self._cursors = answer["cursors"]
        records = stream_records(answer["runs"], answer.get("spills"))
        self.stream.extend(records)
        return records

    async def get_logs(self) -> dict[str, list[tuple[str, str]]]:
        self.logs = await self.client._request("worker_logs", n=self.log_lines)
        self.logs_at = time.monotonic()
        return self.logs

    async def get_graph(self) -> dict[str, Any]:
        """The task graph, with a position for each node."""
        from shoal.dashboard.views import graph_layout

        graph: dict[str, Any] = await self.client._request("dashboard_graph", limit=self.graph_limit)
        graph["positions"] = graph_layout(len(graph["nodes"]), graph["edges"])
        self.graph = graph
        return graph

    async def get_profile(self, key: str | None, start: float | None) -> dict[str, Any]:
        tree: dict[str, Any] = await self.client._request(
            "profile", key=key, start=start, stop=None, workers=None, merge_workers=True,
            server=False, scheduler=False)
        return tree

    async def get_story(self, key: str) -> list[list[Any]]:
        story: list[list[Any]] = await self.client._request("story", keys=[key])
        return story
