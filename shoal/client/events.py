"""Structured events and logging from tasks: ``log_event``, ``get_events``,
``subscribe_topic``, ``unsubscribe_topic``, ``forward_logging`` and
``unforward_logging`` as methods of ``shoal.Client`` (the scheduler side is
``shoal/scheduler/events.py``, the workers' ``shoal/worker/events.py``).

    client.log_event("progress", {"done": 3})
    client.get_events("progress")            # ((1718000000.1, {"done": 3}),)
    client.subscribe_topic("progress", lambda event: print(event))
    client.forward_logging("my.module")      # tasks' records re-emitted here

A handler gets one argument, the event ``(time, msg)`` (``time`` is the
scheduler's clock).  Handlers of a topic run in the order events come:
coroutine functions on the client's event loop; plain functions on the
client's callback thread for a synchronous client (so they may call the
client's blocking methods) and on the event loop for an asynchronous one
(as in dask.distributed).  Every client has handlers for the topics
"print" and "warn" from the start: what tasks send with ``shoal.print``
and ``shoal.warn`` is printed to the client's ``sys.stdout``/``sys.stderr``
or issued as a warning (see shoal/worker/printing.py); and for
"worker-restarted": why a nanny restarted a worker goes to the client's log
(logger ``shoal.client``, level WARNING).

A mixin of ``shoal.Client`` that uses the client's core and that the core
does not import; ``shoal/client/inbox.py`` hands it the scheduler's
``EventLogged`` messages (``deliver``).
"""

from __future__ import annotations

from shoal.client.mixin import MixinBase

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from shoal.protocol.messages import EventLogged

_NOTSET = 0  # logging.NOTSET, without importing logging here


class Events(MixinBase):
    def log_event(self, topic: str | list[str], msg: Any) -> Any:
        """Log ``msg`` under ``topic`` (or under each of a list of topics) at
        the scheduler.  ``msg`` must be msgpack-able plain data (dicts with
        str keys, lists, str, bytes, numbers, bools, None): ``TypeError``
        otherwise."""
        from shoal.protocol.events import check_message, check_topics

        topics = check_topics(topic)
        check_message(msg)
        return self._sync(self._request, "log_event", topic=topics, msg=msg)

    def get_events(self, topic: str | None = None) -> Any:
        """The events of ``topic``, oldest first, as ``((time, msg), ...)``;
        with no topic, ``{topic: events}`` for every topic that has any."""
        if topic is not None:
            from shoal.protocol.events import check_topic

            check_topic(topic)
        return self._sync(self._get_events, topic)

    async def _get_events(self, topic: str | None) -> Any:
        answer = await self._request("get_events", topic=topic)
        if topic is not None:
            return _as_events(answer)
        return {name: _as_events(events) for name, events in answer.items()}

    def subscribe_topic(self, topic: str, handler: Callable[[tuple[float, Any]], Any]) -> None:
        """Call ``handler((time, msg))`` for every event logged under
        ``topic`` from now on (a coroutine function is awaited on the client's
        loop).  A second handler for a topic replaces the first."""
        import logging

        from shoal.protocol import messages as m
        from shoal.protocol.events import check_topic

        check_topic(topic)
        if not callable(handler):
            raise TypeError(f"the handler of topic {topic!r} must be callable, got {handler!r}")
        handlers = event_handlers(self)
        if topic in handlers:
            logging.getLogger("shoal.client").info("Handler for %s already set. Overwriting.", topic)
        handlers[topic] = handler
        self._send(m.SubscribeTopic(topic))

    def unsubscribe_topic(self, topic: str) -> None:
        """Stop receiving the events of ``topic`` and forget its handler;
        ``ValueError`` if there is none."""
        from shoal.protocol import messages as m

        handlers = event_handlers(self)
        if topic not in handlers:
            raise ValueError(f"No event handler known for topic {topic}.")
        del handlers[topic]
        self._send(m.UnsubscribeTopic(topic))

    def forward_logging(self, logger_name: str | None = None, level: int | str = _NOTSET) -> Any:
        """Re-emit here, on the logger of the same name, the log records
        that tasks on the workers emit under ``logger_name`` (None: the root
        logger, so every logger) at ``level`` or above.  A record comes with
        the attribute ``worker`` (the worker's address).  It is emitted here
        if this process's logger is enabled for its level, and the worker's
        logger must let it through in the first place: the effective level
        is the higher of the two.  A worker plugin, as in dask: workers that
        join later forward too; returns what ``register_plugin`` returns."""
        from shoal.protocol.events import forwarding_topic
        from shoal.worker.events import ForwardLoggingPlugin

        name = _plugin_name(logger_name)
        number = _level_number(level)
        topic = forwarding_topic(logger_name)
        self.subscribe_topic(topic, handle_forwarded_log_record)
        # registering the name again replaces the plugin: forwarding twice
        # does not forward every record twice
        client: Any = self  # a shoal.Client: register_plugin is PluginMethods'
        return client.register_plugin(ForwardLoggingPlugin(logger_name, number, topic), name)

    def unforward_logging(self, logger_name: str | None = None) -> Any:
        """Stop forwarding ``logger_name``'s records from the workers (for
        every client: the plugin is the cluster's, as in dask)."""
        from shoal.protocol.events import forwarding_topic

        name = _plugin_name(logger_name)
        self.unsubscribe_topic(forwarding_topic(logger_name))
        client: Any = self
        return client.unregister_worker_plugin(name)


def _plugin_name(logger_name: Any) -> str:
    if logger_name is not None and not isinstance(logger_name, str):
        raise TypeError(f"logger_name must be a str or None, got {logger_name!r}")
    return f"forward-logging-{logger_name or '<root>'}"


def _as_events(events: list[list[Any]]) -> tuple[tuple[float, Any], ...]:
    return tuple((t, msg) for t, msg in events)


def _level_number(level: Any) -> int:
    import logging

    if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    raise ValueError(f"level must be a logging level (an int >= 0 or a name such as 'INFO'), "
                     f"got {level!r}")


# ---------------------------------------------------------------------- delivery


def event_handlers(client: Any) -> dict[str, Callable[[tuple[float, Any]], Any]]:
    """The client's handlers by topic, made on first use with the defaults."""
    handlers = client.__dict__.get("_event_handlers")
    if handlers is None:
        from shoal.protocol.events import RESTART_TOPIC

        handlers = client.__dict__.setdefault(
            "_event_handlers",
            {"print": handle_print, "warn": handle_warn, RESTART_TOPIC: handle_worker_restarted})
    return handlers  # type: ignore[no-any-return]


def deliver(client: Any, msgs: list[EventLogged]) -> None:
    """On the client's loop, not holding its lock: run the handlers of
    these events, in order."""
    import inspect

    handlers = event_handlers(client)
    for msg in msgs:
        handler = handlers.get(msg.topic)
        if handler is None:
            continue  # unsubscribed while this was on its way
        event = (msg.time, msg.msg)
        if client.asynchronous or inspect.iscoroutinefunction(handler):
            _call(client, handler, event, msg.topic)
        else:
            from functools import partial

            from shoal.client.waiting_on import in_callback_thread

            with client._lock:
                in_callback_thread(client, partial(_call, client, handler, event, msg.topic))


def _call(client: Any, handler: Callable[..., Any], event: tuple[float, Any], topic: str) -> None:
    """Run one handler; what it returns to await is awaited on the client's loop."""
    import asyncio
    import inspect

    try:
        result = handler(event)
    except Exception:
        _log_handler_error(topic)
        return
    if inspect.isawaitable(result):
        if client._in_loop_thread():
            client._spawn(_await(result, topic))
        else:
            coro = _await(result, topic)
            try:
                asyncio.run_coroutine_threadsafe(coro, client.loop)
            except RuntimeError:  # the loop has gone with the client
                coro.close()
                if inspect.iscoroutine(result):
                    result.close()


async def _await(awaitable: Any, topic: str) -> None:
    try:
        await awaitable
    except Exception:
        _log_handler_error(topic)


def _log_handler_error(topic: str) -> None:
    import logging

    logging.getLogger("shoal.client").exception("the handler of event topic %r failed", topic)


# ---------------------------------------------------------------------- default handlers


def handle_print(event: tuple[float, Any]) -> None:
    """What ``shoal.print`` in a task sends: printed here, as the task printed it."""
    import builtins
    import sys

    _, msg = event
    if not isinstance(msg, dict):
        builtins.print(msg)  # an event someone logged by hand
        return
    args = msg.get("args")
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"a print event carries a list of args, got {args!r}")
    file = {None: None, 1: sys.stdout, 2: sys.stderr}.get(msg.get("file"), False)
    if file is False:
        raise TypeError(f"a print event writes to file 1 or 2, got {msg.get('file')!r}")
    builtins.print(*args, sep=msg.get("sep"), end=msg.get("end"), file=file,
                   flush=bool(msg.get("flush")))


def handle_warn(event: tuple[float, Any]) -> None:
    """What ``shoal.warn`` in a task sends: the same warning, issued here."""
    import pickle
    import warnings

    _, msg = event
    if not isinstance(msg, dict):
        warnings.warn(str(msg), stacklevel=1)  # an event someone logged by hand
        return
    if "message" not in msg:
        raise TypeError('a warn event carries a "message"')
    message = pickle.loads(msg["message"])
    category = pickle.loads(msg["category"]) if msg.get("category") is not None else None
    warnings.warn(message, category, stacklevel=1)


def handle_worker_restarted(event: tuple[float, Any]) -> None:
    """A nanny restarted a worker (shoal/scheduler/liveness.py): a warning
    on the client's log, saying why."""
    import logging

    _, msg = event
    if isinstance(msg, dict):
        logging.getLogger("shoal.client").warning(
            "worker %s (%s) was restarted by its nanny: %s", msg.get("worker"), msg.get("name"),
            msg.get("reason"))


def handle_forwarded_log_record(event: tuple[float, Any]) -> None:
    """A record a task emitted on a forwarded logger: handled by the logger
    of the same name here, if that logger is enabled for its level."""
    import logging

    _, attributes = event
    record = logging.makeLogRecord(attributes)
    log = logging.getLogger(record.name)
    if log.isEnabledFor(record.levelno):
        log.handle(record)
