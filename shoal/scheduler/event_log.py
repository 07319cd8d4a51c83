"""The scheduler's event log, PURE: the last events of each topic, as
``(time, msg)``, and the clients subscribed to each topic.  Time comes in
with each event; what to send to whom comes out (``publish``).  The
extension that feeds it and sends its messages is ``events.py``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shoal.protocol import messages as m


class Topic:
    __slots__ = ("events", "subscribers")

    def __init__(self, maxlen: int) -> None:
        self.events: deque[tuple[float, Any]] = deque(maxlen=maxlen)
        self.subscribers: set[str] = set()


class EventLog:
    """The last ``maxlen`` events of each topic and who subscribed to it.
    Pure: time comes in with each event."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 0:
            raise ValueError(f"events-log-length must be at least 0, got {maxlen}")
        self.maxlen = maxlen
        self.topics: dict[str, Topic] = {}

    def _topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(self.maxlen)
        return topic

    def publish(self, topics: list[str], msg: Any, now: float) -> list[tuple[str, m.EventLogged]]:
        """Log ``msg`` under each topic; the messages for subscribers, as
        ``(client id, EventLogged)`` in order."""
        out = []
        for name in topics:
            topic = self._topic(name)
            topic.events.append((now, msg))
            for client in topic.subscribers:
                out.append((client, m.EventLogged(name, now, msg)))
        return out

    def subscribe(self, topic: str, client: str) -> None:
        self._topic(topic).subscribers.add(client)

    def unsubscribe(self, topic: str, client: str) -> None:
        t = self.topics.get(topic)
        if t is not None:
            t.subscribers.discard(client)

    def drop_subscriber(self, client: str) -> None:
        """``client`` has gone: it subscribes to nothing any more."""
        for t in self.topics.values():
            t.subscribers.discard(client)

    def forget(self, topic: str) -> None:
        """Drop the events of ``topic`` (its subscribers stay subscribed)."""
        t = self.topics.get(topic)
        if t is None:
            return
        if t.subscribers:
            t.events.clear()
        else:
            del self.topics[topic]

    def events(self, topic: str) -> list[tuple[float, Any]]:
        t = self.topics.get(topic)
        return list(t.events) if t is not None else []

    def all_events(self) -> dict[str, list[tuple[float, Any]]]:
        """Every topic that has events."""
        return {name: list(t.events) for name, t in self.topics.items() if t.events}
