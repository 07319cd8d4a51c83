"""Structured events and logging from tasks, with real scheduler and worker
processes: log_event/get_events, subscriptions, shoal.print/shoal.warn,
forward_logging, and the worker's record of a failed task."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import shoal
from shoal import Client, LocalCluster, get_worker


def unique(prefix: str) -> str:
    """A topic or logger name no other test of the module's cluster uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_in_task(topic: Any, msg: Any) -> str:
    get_worker().log_event(topic, msg)
    return str(get_worker().address)


def print_in_task(text: str) -> None:
    shoal.print(text, 1, sep="-")
    shoal.print("to stderr:", text, file=sys.stderr)


def plain_print_then_mark(text: str, marker: str) -> None:
    print(text)  # the builtin, on purpose: it stays on the worker
    shoal.print(marker)


def print_to_a_file(text: str) -> None:
    with open("/dev/null", "w") as f:
        shoal.print(text, file=f)


def warn_in_task(text: str) -> None:
    shoal.warn(text, RuntimeWarning)


def log_records(logger_name: str, marker: str) -> None:
    """Records at three levels, the last with a traceback, then a marker
    event (the records are all sent before it).  The logger lets INFO
    through on the worker: workers' loggers are at WARNING by default."""
    log = logging.getLogger(logger_name)
    log.setLevel(logging.INFO)
    log.info("info %s", 1)
    log.warning("warning %s", 2)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("error %s", 3)
    get_worker().log_event(marker, "done")


def divide(x: int, numbers: list[int]) -> float:
    return x / 0


class Collector:
    """A topic handler that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def msgs(self) -> list[Any]:
        return [msg for _, msg in self.events]


# ---------------------------------------------------------------------- log_event, get_events


def test_client_events_round_trip(client: Client) -> None:
    topic, other = unique("round"), unique("other")
    client.log_event(topic, {"n": 1, "nested": {"xs": [1.5, None, True, b"raw"]}})
    client.log_event([topic, other], ["a", 2])
    events = client.get_events(topic)
    assert [msg for _, msg in events] == [{"n": 1, "nested": {"xs": [1.5, None, True, b"raw"]}},
                                          ["a", 2]]
    assert events[0][0] <= events[1][0]
    assert client.get_events(other) == (events[1],)
    everything = client.get_events()
    assert everything[topic] == events and everything[other] == (events[1],)
    assert client.get_events(unique("never")) == ()


def test_bad_events_raise_at_the_call_site(client: Client) -> None:
    topic = unique("bad")
    with pytest.raises(TypeError, match=r"msgpack serializable.*object"):
        client.log_event(topic, object())
    with pytest.raises(TypeError, match="keys must be str"):
        client.log_event(topic, {1: "a"})
    with pytest.raises(TypeError, match="64 bits"):
        client.log_event(topic, [2**70])
    with pytest.raises(TypeError, match="topic"):
        client.log_event(5, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="topic"):
        client.get_events(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        client.subscribe_topic(topic, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No event handler"):
        client.unsubscribe_topic(topic)
    with pytest.raises(ValueError, match="level"):
        client.forward_logging("x", level="LOUD")
    with pytest.raises(TypeError, match=r"msgpack serializable.*set"):
        client.submit(log_in_task, topic, {"s": {1}}).result()
    client.log_event(topic, "still served")
    assert [msg for _, msg in client.get_events(topic)] == ["still served"]


def test_events_from_tasks_are_at_the_scheduler_before_their_results(client: Client) -> None:
    """A task's event goes ahead of its report: once the result is here,
    get_events has the event, no waiting needed."""
    topic = unique("from-task")
    for i in range(5):
        future = client.submit(log_in_task, topic, {"i": i}, pure=False)
        worker = future.result()
        events = client.get_events(topic)
        assert len(events) == i + 1
        assert events[-1][1] == {"i": i, "worker": worker}
    # a list of topics; a message that is not a dict says nothing of its worker
    topics = [unique("a"), unique("b")]
    future = client.submit(log_in_task, topics, [1, 2])
    future.result()
    assert [client.get_events(t)[0][1] for t in topics] == [[1, 2], [1, 2]]


# ---------------------------------------------------------------------- subscriptions


def test_subscribers_get_events_from_tasks_clients_and_the_scheduler(
        cluster: LocalCluster, client: Client, wait_until: Callable[..., bool]) -> None:
    topic = unique("sub")
    got = Collector()
    client.subscribe_topic(topic, got)
    worker = client.submit(log_in_task, topic, {"from": "task"}).result()
    with Client(cluster) as other:
        other.log_event(topic, {"from": "client"})

    def from_scheduler(dask_scheduler: Any) -> None:
        dask_scheduler.log_event(topic, {"from": "scheduler"})

    client.run_on_scheduler(from_scheduler)
    assert wait_until(lambda: len(got.events) == 3)
    assert got.msgs() == [{"from": "task", "worker": worker}, {"from": "client"},
                          {"from": "scheduler"}]
    assert all(isinstance(t, float) for t, _ in got.events)
    assert tuple(got.events) == client.get_events(topic)
    client.unsubscribe_topic(topic)


def test_unsubscribed_topics_are_not_delivered(client: Client,
                                               wait_until: Callable[..., bool]) -> None:
    topic, marker = unique("unsub"), unique("marker")
    got, marks = Collector(), Collector()
    client.subscribe_topic(topic, got)
    client.subscribe_topic(marker, marks)
    client.log_event(topic, 1)
    assert wait_until(lambda: got.msgs() == [1])
    client.unsubscribe_topic(topic)
    client.log_event(topic, 2)
    client.log_event(marker, "after")  # delivered in order: once it is here, 2 would be too
    assert wait_until(lambda: marks.msgs() == ["after"])
    assert got.msgs() == [1]
    assert [m for _, m in client.get_events(topic)] == [1, 2]  # logged all the same
    client.unsubscribe_topic(marker)


def test_handlers_of_an_asynchronous_client(cluster: LocalCluster) -> None:
    topic = unique("async")

    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            loop = asyncio.get_running_loop()
            got: asyncio.Queue[Any] = asyncio.Queue()  # not thread-safe: handlers run on the loop

            async def coroutine_handler(event: Any) -> None:
                assert asyncio.get_running_loop() is loop
                await got.put(("async", event[1]))

            client.subscribe_topic(topic, coroutine_handler)
            await client.log_event(topic, "one")
            assert await asyncio.wait_for(got.get(), 10) == ("async", "one")
            client.subscribe_topic(topic, lambda event: got.put_nowait(("sync", event[1])))
            await client.submit(log_in_task, topic, "two")
            assert await asyncio.wait_for(got.get(), 10) == ("sync", "two")
            assert [m for _, m in await client.get_events(topic)] == ["one", "two"]

    asyncio.run(main())


# ---------------------------------------------------------------------- print and warn


def test_print_in_a_task_reaches_the_client(client: Client, capsys: pytest.CaptureFixture[str],
                                            wait_until: Callable[..., bool]) -> None:
    text = unique("hello")
    out, err = [], []

    def read() -> tuple[str, str]:
        captured = capsys.readouterr()
        out.append(captured.out)
        err.append(captured.err)
        return "".join(out), "".join(err)

    client.submit(print_in_task, text).result()
    assert wait_until(lambda: f"to stderr: {text}\n" in read()[1])
    assert f"{text}-1\n" in "".join(out)
    assert text not in "".join(err).replace(f"to stderr: {text}", "")
    events = [m for _, m in client.get_events("print") if text in m["args"]]
    assert events[0]["args"] == [text, "1"] and events[0]["sep"] == "-"
    assert events[0]["worker"] in client.nthreads()


def test_plain_print_in_a_task_stays_on_the_worker(client: Client,
                                                   capsys: pytest.CaptureFixture[str],
                                                   wait_until: Callable[..., bool]) -> None:
    plain, marker = unique("plain"), unique("marker")
    out: list[str] = []

    def marked() -> bool:
        out.append(capsys.readouterr().out)
        return marker in "".join(out)

    client.submit(plain_print_then_mark, plain, marker).result()
    assert wait_until(marked)
    assert plain not in "".join(out)


def test_print_and_warn_outside_a_task_are_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    shoal.print("local", 2, sep="+", end="!\n")
    assert capsys.readouterr().out == "local+2!\n"
    with pytest.warns(UserWarning, match="local warning"):
        shoal.warn("local warning")


def test_print_in_a_task_to_another_file_is_refused(client: Client) -> None:
    with pytest.raises(TypeError, match=r"sys\.stdout or sys\.stderr"):
        client.submit(print_to_a_file, "x").result()


def test_warn_in_a_task_reaches_the_client(client: Client,
                                           wait_until: Callable[..., bool]) -> None:
    text = unique("careful")
    with pytest.warns(RuntimeWarning, match=text) as record:
        client.submit(warn_in_task, text).result()
        assert wait_until(lambda: any(text in str(w.message) for w in record))
    [warning] = [w for w in record if text in str(w.message)]
    assert warning.category is RuntimeWarning


# ---------------------------------------------------------------------- forwarded logging


def _forwarded(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and hasattr(r, "worker")]


def test_forward_logging_re_emits_task_records_here(
        client: Client, caplog: pytest.LogCaptureFixture,
        wait_until: Callable[..., bool]) -> None:
    name, marker = unique("user"), unique("marker")
    marks = Collector()
    client.subscribe_topic(marker, marks)
    caplog.set_level(logging.INFO, logger=name)
    statuses = client.forward_logging(name)
    try:
        assert statuses == {w: "OK" for w in client.nthreads()}  # register_plugin's answer
        client.submit(log_records, f"{name}.sub", marker).result()
        assert wait_until(lambda: len(marks.events) == 1)
        records = _forwarded(caplog, f"{name}.sub")
        assert [(r.levelno, r.getMessage()) for r in records] == [
            (logging.INFO, "info 1"), (logging.WARNING, "warning 2"), (logging.ERROR, "error 3")]
        assert all(getattr(r, "worker") in client.nthreads() for r in records)  # noqa: B009
        assert "ZeroDivisionError" in (records[2].exc_text or "")
    finally:
        client.unforward_logging(name)
    caplog.clear()
    client.submit(log_records, name, marker, pure=False).result()
    assert wait_until(lambda: len(marks.events) == 2)
    assert _forwarded(caplog, name) == []
    client.unsubscribe_topic(marker)


def test_forward_logging_at_a_level(client: Client, caplog: pytest.LogCaptureFixture,
                                    wait_until: Callable[..., bool]) -> None:
    name, marker = unique("leveled"), unique("marker")
    marks = Collector()
    client.subscribe_topic(marker, marks)
    caplog.set_level(logging.INFO, logger=name)
    client.forward_logging(name, level="WARNING")
    try:
        client.submit(log_records, name, marker).result()
        assert wait_until(lambda: len(marks.events) == 1)
        assert [r.getMessage() for r in _forwarded(caplog, name)] == ["warning 2", "error 3"]
    finally:
        client.unforward_logging(name)
        client.unsubscribe_topic(marker)


def test_failed_tasks_are_logged_on_the_worker_and_can_be_forwarded(
        client: Client, caplog: pytest.LogCaptureFixture,
        wait_until: Callable[..., bool]) -> None:
    caplog.set_level(logging.ERROR, logger="shoal.worker")
    client.forward_logging("shoal.worker")
    try:
        future = client.submit(divide, 1, list(range(100_000)))
        with pytest.raises(ZeroDivisionError):
            future.result()
        assert wait_until(lambda: _forwarded(caplog, "shoal.worker"))
    finally:
        client.unforward_logging("shoal.worker")
    [record] = _forwarded(caplog, "shoal.worker")
    text = record.getMessage()
    assert text.startswith("Compute Failed\n")
    assert f"Key:       {future.key}\n" in text
    assert "Function:  " in text and "divide" in text
    assert "args:      (1, [0, 1, 2" in text
    assert "ZeroDivisionError" in text
    assert len(text) < 4000  # the big argument is cut short


# ---------------------------------------------------------------------- in-process clusters


@pytest.fixture
def small_log_client() -> Any:
    """Scheduler and one worker in this process, keeping 3 events a topic."""
    with shoal.config.set({"scheduler.events-log-length": 3}), \
            Client(n_workers=1, threads_per_worker=1, processes=False) as c:
        yield c


def test_the_scheduler_keeps_the_last_events_of_each_topic(small_log_client: Client) -> None:
    topic = unique("bounded")
    for i in range(5):
        small_log_client.log_event(topic, i)
    assert [m for _, m in small_log_client.get_events(topic)] == [2, 3, 4]


def test_failed_task_record_on_an_in_process_worker(small_log_client: Client,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The record is written before the failure is reported: it is there
    when the exception reaches the client."""
    caplog.set_level(logging.ERROR, logger="shoal.worker")
    future = small_log_client.submit(divide, 2, ["x" * 10_000] * 100)
    with pytest.raises(ZeroDivisionError):
        future.result()
    [record] = [r for r in caplog.records if r.name == "shoal.worker" and future.key in r.getMessage()]
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert "Function:  " in text and "divide" in text and "args:      (2, ['xxx" in text
    assert len(text) < 4000


def test_workers_that_join_later_forward_too(small_log_client: Client,
                                             caplog: pytest.LogCaptureFixture,
                                             wait_until: Callable[..., bool]) -> None:
    """In one process, only the forwarded copy carries ``worker``, and the
    client's re-emitted record does not go round again."""
    name, marker = unique("late"), unique("marker")
    marks = Collector()
    small_log_client.subscribe_topic(marker, marks)
    caplog.set_level(logging.INFO, logger=name)
    small_log_client.forward_logging(name)
    try:
        first = set(small_log_client.nthreads())
        small_log_client.cluster.scale(2)
        small_log_client.wait_for_workers(2, timeout=10)
        [new] = set(small_log_client.nthreads()) - first
        small_log_client.submit(log_records, name, marker, workers=[new]).result()
        assert wait_until(lambda: len(marks.events) == 1)
        records = _forwarded(caplog, name)
        assert [r.getMessage() for r in records] == ["info 1", "warning 2", "error 3"]
        assert {getattr(r, "worker") for r in records} == {new}  # noqa: B009
    finally:
        small_log_client.unforward_logging(name)


SEEN_BY_PLUGIN: list[tuple[str, Any]] = []


class EventWatcher(shoal.SchedulerPlugin):
    def log_event(self, topic: str, msg: Any) -> None:
        SEEN_BY_PLUGIN.append((topic, msg))


def test_scheduler_plugins_hear_of_every_event(small_log_client: Client) -> None:
    """In one process, the plugin the scheduler runs appends to this module's list."""
    topics = [unique("p1"), unique("p2")]
    small_log_client.register_plugin(EventWatcher(), name="event-watcher")
    try:
        small_log_client.log_event(topics, {"n": 1})
        assert [(t, m) for t, m in SEEN_BY_PLUGIN if t in topics] == [
            (topics[0], {"n": 1}), (topics[1], {"n": 1})]
    finally:
        small_log_client.unregister_scheduler_plugin("event-watcher")
