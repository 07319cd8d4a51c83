"""Structured events: the scheduler's log of ``(time, msg)`` per topic, and
its delivery to the clients that subscribed to a topic.

A scheduler extension (see ``server.py``).  Events come from clients
(``client.log_event``, a request), from tasks on workers
(``get_worker().log_event``, a ``LogEvent`` message sent ahead of the task's
report, so the event is here before the task's result is), and from the
scheduler itself (clients and workers coming and going, and
``scheduler.log_event`` for code run with ``run_on_scheduler``).

Data flow::

    client --Request log_event--> Events.rpc_log_event --\\
    worker --LogEvent--> Events.on_worker_event ----------+--> EventLog.publish
    scheduler hooks (add-client, add-worker, ...) ------/        |
                                      EventLogged to each subscriber (state.send_client)

Every client is subscribed to the "print" and "warn" topics when it connects
(``shoal.print``/``shoal.warn`` in tasks reach it that way, as in
dask.distributed).  Scheduler plugins hear of every event (their
``log_event(topic, msg)``).

The pure part, bounded logs and subscriptions, is ``event_log.py``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from shoal.protocol import messages as m
from shoal.protocol.events import DEFAULT_TOPICS, check_message, check_topics
from shoal.scheduler.event_log import EventLog

if TYPE_CHECKING:
    from shoal.scheduler.server import SchedulerServer

logger = logging.getLogger("shoal.scheduler")


class Events:
    client_messages = {m.SubscribeTopic: "on_subscribe", m.UnsubscribeTopic: "on_unsubscribe"}
    worker_messages = {m.LogEvent: "on_worker_event"}

    def __init__(self, server: SchedulerServer) -> None:
        from shoal import config

        self.server = server
        self.log = EventLog(int(config.get("scheduler.events-log-length")))
        # the topic of a client or worker that left: its events are dropped
        # this long after, unless it came back meanwhile
        self.cleanup_delay = config.duration("scheduler.events-cleanup-delay") or 0.0
        self._gone: OrderedDict[str, float] = OrderedDict()

    # ------------------------------------------------------------------ logging

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log ``msg`` under ``topic`` (a name or a list of names) and send
        it to the topic's subscribers; ``TypeError`` for a message that is
        not plain msgpack data."""
        topics = check_topics(topic)
        check_message(msg)
        self._publish(topics, msg)

    def _publish(self, topics: list[str], msg: Any) -> None:
        state = self.server.state
        for client, out in self.log.publish(topics, msg, time.time()):
            state.send_client(client, out)
        self.server._schedule_flush()
        plugins = self.server.plugins
        if plugins.plugins:
            for topic in topics:
                plugins.event_logged(topic, msg)

    async def rpc_log_event(self, client_id: str, topic: Any, msg: Any) -> None:
        self.log_event(topic, msg)

    def on_worker_event(self, address: str, msg: m.LogEvent) -> None:
        """A task (or the worker itself) logged an event; a dict says which
        worker it came from (``"worker"``), as in dask.distributed."""
        try:
            topics = check_topics(msg.topics)
            check_message(msg.msg)
        except (TypeError, ValueError) as e:
            logger.warning("dropped an event from worker %s: %s", address, e)
            return
        event = msg.msg
        if isinstance(event, dict) and topics != [address]:
            event["worker"] = address
        self._publish(topics, event)

    async def rpc_get_events(self, client_id: str, topic: str | None = None) -> Any:
        if topic is None:
            return self.log.all_events()
        check_topics(topic)
        return self.log.events(topic)

    # ------------------------------------------------------------------ subscriptions

    def on_subscribe(self, client_id: str, msg: m.SubscribeTopic) -> None:
        self.log.subscribe(msg.topic, client_id)

    def on_unsubscribe(self, client_id: str, msg: m.UnsubscribeTopic) -> None:
        self.log.unsubscribe(msg.topic, client_id)

    # ------------------------------------------------------------------ comings and goings

    def client_joined(self, client_id: str) -> None:
        for topic in DEFAULT_TOPICS:
            self.log.subscribe(topic, client_id)
        self._came_back(client_id)
        self._publish(["all", client_id], {"action": "add-client", "client": client_id})

    def client_left(self, client_id: str) -> None:
        self.log.drop_subscriber(client_id)
        self._publish(["all", client_id], {"action": "remove-client", "client": client_id})
        self._went(client_id)

    def worker_joined(self, address: str) -> None:
        self._came_back(address)
        self._publish([address], {"action": "add-worker"})
        self._publish(["all"], {"action": "add-worker", "worker": address})

    def worker_left(self, address: str) -> None:
        self._publish([address], {"action": "remove-worker"})
        self._publish(["all"], {"action": "remove-worker", "worker": address})
        self._went(address)

    def _went(self, topic: str) -> None:
        now = time.monotonic()
        self._gone[topic] = now
        self._gone.move_to_end(topic)
        while self._gone:
            name, since = next(iter(self._gone.items()))
            if now - since < self.cleanup_delay:
                break
            del self._gone[name]
            self.log.forget(name)

    def _came_back(self, topic: str) -> None:
        self._gone.pop(topic, None)
