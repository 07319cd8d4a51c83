"""The pure parts of events: what a message and a topic may be, the
scheduler's bounded log and subscriptions, and the summary of a failed
task's arguments."""

from __future__ import annotations

import pytest

from shoal.protocol import messages as m
from shoal.protocol.events import check_message, check_topics, forwarding_topic, is_plain
from shoal.scheduler.event_log import EventLog
from shoal.worker.failures import summary


@pytest.mark.parametrize("msg", [
    None, True, 0, -(2**63), 2**64 - 1, 1.5, "text", b"bytes", [], (), {},
    {"a": [1, {"b": (None, b"x")}]},
])
def test_plain_messages_pass(msg: object) -> None:
    check_message(msg)
    assert is_plain(msg)


@pytest.mark.parametrize(("msg", "problem"), [
    (object(), "msg is of type builtins.object"),
    ({1: "a"}, "keys must be str"),
    ({"a": [1, {2, 3}]}, "msg['a'][1] is of type builtins.set"),
    (2**64, "outside 64 bits"),
    ([-(2**63) - 1], "msg[0] is an int outside 64 bits"),
    ("\ud800", "not valid unicode"),
    (type("MyStr", (str,), {})("x"), "MyStr"),
])
def test_other_messages_are_refused_naming_the_part(msg: object, problem: str) -> None:
    with pytest.raises(TypeError, match="msgpack serializable") as info:
        check_message(msg)
    assert problem in str(info.value)
    assert not is_plain(msg)


def test_a_message_nested_without_end_is_refused() -> None:
    deep: list[object] = []
    deep.append(deep)
    with pytest.raises(TypeError, match="nested more than"):
        check_message(deep)


def test_topics() -> None:
    assert check_topics("a") == ["a"]
    assert check_topics(["a", "b"]) == ["a", "b"]
    assert check_topics(("a",)) == ["a"]
    with pytest.raises(TypeError, match="str or a list of str"):
        check_topics(3)
    with pytest.raises(TypeError, match="is a str"):
        check_topics(["a", 3])
    with pytest.raises(ValueError, match="empty"):
        check_topics("")
    assert forwarding_topic(None) == "forwarded-log-record-forward-logging-<root>"
    assert forwarding_topic("a.b") == "forwarded-log-record-forward-logging-a.b"


def test_the_log_keeps_the_last_events_and_tells_subscribers() -> None:
    log = EventLog(maxlen=2)
    assert log.publish(["t"], 1, now=10.0) == []
    log.subscribe("t", "c1")
    log.subscribe("u", "c2")
    out = log.publish(["t", "u"], {"x": 2}, now=11.0)
    assert [(c, msg.topic, msg.time, msg.msg) for c, msg in out] == [
        ("c1", "t", 11.0, {"x": 2}), ("c2", "u", 11.0, {"x": 2})]
    assert all(type(msg) is m.EventLogged for _, msg in out)
    log.publish(["t"], 3, now=12.0)
    assert log.events("t") == [(11.0, {"x": 2}), (12.0, 3)]
    assert log.events("nothing") == []
    assert log.all_events() == {"t": [(11.0, {"x": 2}), (12.0, 3)], "u": [(11.0, {"x": 2})]}


def test_unsubscribing_and_forgetting() -> None:
    log = EventLog(maxlen=10)
    log.subscribe("t", "c1")
    log.subscribe("t", "c2")
    log.unsubscribe("t", "c1")
    log.unsubscribe("never", "c1")  # nothing to do
    assert [c for c, _ in log.publish(["t"], 1, now=1.0)] == ["c2"]
    log.drop_subscriber("c2")
    assert log.publish(["t"], 2, now=2.0) == []
    log.subscribe("kept", "c3")
    log.publish(["kept", "gone"], 3, now=3.0)
    log.forget("t")
    log.forget("kept")  # a subscriber stays subscribed; the events go
    log.forget("unknown")
    assert log.all_events() == {"gone": [(3.0, 3)]}
    assert [c for c, _ in log.publish(["kept"], 4, now=4.0)] == ["c3"]
    with pytest.raises(ValueError, match="at least 0"):
        EventLog(maxlen=-1)


def test_summaries_of_big_arguments_are_short() -> None:
    assert summary((1, "a"), 100) == "(1, 'a')"
    big = (list(range(10**6)), "x" * 10**6, {i: i for i in range(10**4)})
    text = summary(big, 200)
    assert len(text) <= 200 and text.startswith("([0, 1, 2")
    assert summary(big[1], 0) == repr(big[1])  # 0: no limit

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert "Broken" in summary(Broken(), 100)  # a broken repr does not fail the record
    assert "repr failed" in summary(Broken(), 0)
