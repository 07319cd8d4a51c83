"""The pure parts of introspection: call trees, the sampler's bookkeeping
(driven by hand, with a fake clock), the log buffer, task-stream selection,
version comparison, HTML pages and cluster-dump files."""

from __future__ import annotations

import logging
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from shoal.diagnostics import cluster_dump, html, profiling, task_stream, versions
from shoal.diagnostics.logs import LogBuffer


def outer(depth: int) -> list[FrameType]:
    return inner(depth)


def inner(depth: int) -> list[FrameType]:
    """The stack from ``outer`` down to here: cut below ``outer``'s caller."""
    frame = sys._getframe()
    caller = frame.f_back.f_back  # type: ignore[union-attr]
    return profiling.stack_of(frame, stop=caller.f_code)  # type: ignore[union-attr]


def test_stack_is_cut_below_the_stop_frame() -> None:
    stack = outer(0)
    assert [f.f_code.co_name for f in stack] == ["outer", "inner"]


def names(tree: dict[str, Any]) -> dict[str, Any]:
    """``{function name: (count, children)}`` of a call tree, for comparing."""
    return {c["description"]["name"]: (c["count"], names(c)) for c in tree["children"].values()}


def _collect(frame: FrameType | None, wanted: set[str]) -> list[FrameType]:
    out = []
    while frame is not None and frame.f_code.co_name in wanted:
        out.append(frame)
        frame = frame.f_back
    return out[::-1]


def stack_in(*funcs: str) -> list[FrameType]:
    """A real stack of functions named ``funcs``, outermost first."""
    ns: dict[str, Any] = {"sys": sys, "_collect": _collect, "wanted": set(funcs)}
    exec(f"def {funcs[-1]}():\n    return _collect(sys._getframe(), wanted)\n", ns)
    for caller, callee in zip(funcs[-2::-1], funcs[:0:-1]):
        exec(f"def {caller}():\n    return {callee}()\n", ns)
    stack: list[FrameType] = ns[funcs[0]]()
    return stack


def test_add_stack_counts_samples_through_each_node() -> None:
    tree = profiling.create()
    profiling.add_stack(tree, stack_in("a", "b", "c"))
    profiling.add_stack(tree, stack_in("a", "b"))
    profiling.add_stack(tree, stack_in("a", "d"))
    assert tree["count"] == 3
    assert names(tree) == {"a": (3, {"b": (2, {"c": (1, {})}), "d": (1, {})})}
    a = next(iter(tree["children"].values()))
    assert a["identifier"].startswith("a;") and a["description"]["line_number"] > 0


def test_merge_adds_counts_by_identifier_and_copies() -> None:
    one, two = profiling.create(), profiling.create()
    profiling.add_stack(one, stack_in("a", "b"))
    profiling.add_stack(two, stack_in("a", "b"))
    profiling.add_stack(two, stack_in("x"))
    merged = profiling.merge(one, two)
    assert merged["count"] == 3
    assert names(merged) == {"a": (2, {"b": (2, {})}), "x": (1, {})}
    profiling.add_stack(one, stack_in("a"))  # the inputs stay apart from the result
    assert names(merged)["a"][0] == 2
    assert profiling.merge() == profiling.create()


def test_select_takes_the_cycles_that_overlap_the_window() -> None:
    history = [(10.0, "a"), (11.0, "b"), (12.0, "c"), (13.0, "d")]
    assert profiling.select(history, None, None) == ["a", "b", "c", "d"]
    assert profiling.select(history, 11.0, None) == ["b", "c", "d"]
    assert profiling.select(history, 11.5, 12.5) == ["c", "d"]  # d (ending at 13) covers 12.5
    assert profiling.select(history, None, 10.5) == ["a", "b"]
    assert profiling.select(history, 20.0, None) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampler_files_samples_by_key_prefix_and_cycle() -> None:
    clock = FakeClock()
    me = threading.get_ident()
    running: dict[int, str] = {}
    sampler = profiling.Sampler(0.01, 1.0, 10, lambda: dict(running), lambda: True,
                                lambda key: key.split("-")[0], clock=clock)
    sampler.sample()  # nothing running: nothing counted
    assert sampler.profile()["count"] == 0
    running[me] = "inc-1"
    sampler.sample()
    clock.now += 1.5
    sampler.sample()  # still in the first cycle's count, then the cycle closes
    running[me] = "dec-2"
    clock.now += 0.5
    sampler.sample()
    assert sampler.profile()["count"] == 3
    assert sampler.profile(key="inc")["count"] == 2
    assert sampler.profile(key="dec")["count"] == 1
    assert sampler.profile(key="other")["count"] == 0
    assert sampler.profile(start=1001.0)["count"] == 3  # the closed cycle ended at 1001.5
    assert sampler.profile(stop=1000.5)["count"] == 2  # only the closed cycle
    assert sampler.profile(start=5000.0)["count"] == 0
    here = "test_sampler_files_samples_by_key_prefix_and_cycle"
    assert any(here in ident for ident in _idents(sampler.profile()))


def _idents(tree: dict[str, Any]) -> set[str]:
    out = set()
    for ident, child in tree["children"].items():
        out.add(ident)
        out |= _idents(child)
    return out


def test_sampler_watches_another_thread_apart_from_tasks() -> None:
    clock = FakeClock()
    sampler = profiling.Sampler(0.01, 1.0, 10, dict, lambda: True, str, clock=clock)
    sampler.sample()
    assert sampler.profile(thread=True)["count"] == 0
    sampler.watch_thread(threading.get_ident())
    sampler.sample()
    sampler.sample()
    assert sampler.profile(thread=True)["count"] == 2
    assert sampler.profile()["count"] == 0


def test_sampler_thread_ends_when_its_owner_is_gone() -> None:
    alive = threading.Event()
    alive.set()
    sampler = profiling.Sampler(0.001, 1.0, 10, dict, alive.is_set, str).start()
    alive.clear()
    sampler._thread.join(timeout=10)
    assert not sampler._thread.is_alive()


def test_sampler_stops_at_once_when_told() -> None:
    sampler = profiling.Sampler(3600.0, 1.0, 10, dict, lambda: True, str).start()
    sampler.stop()
    assert not sampler._thread.is_alive()


def test_sampler_rejects_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        profiling.Sampler(0, 1.0, 10, dict, lambda: True, str)


def test_format_stack_reads_like_a_traceback() -> None:
    lines = profiling.format_stack(outer(0))
    assert lines[0].startswith('  File "') and ", in outer\n\t" in lines[0]
    assert "return inner(depth)" in lines[0]


# ---------------------------------------------------------------------- logs


def test_log_buffer_keeps_the_last_lines_newest_first() -> None:
    buf = LogBuffer(3, "%(levelname)s:%(message)s")
    log = logging.getLogger("shoal.test.buffer")
    log.addHandler(buf)
    log.propagate = False
    try:
        for i in range(5):
            log.warning("line %d", i)
        assert buf.tail() == [("WARNING", "WARNING:line 4"), ("WARNING", "WARNING:line 3"),
                              ("WARNING", "WARNING:line 2")]
        assert buf.tail(1) == [("WARNING", "WARNING:line 4")]
        assert buf.tail(0) == []
        buf.grow(10)
        log.error("more")
        assert len(buf.tail()) == 4
        assert buf.tail(start=buf.records[-1][0] + 1) == []
    finally:
        log.removeHandler(buf)
        log.propagate = True


def test_log_buffer_formats_at_once_and_keeps_no_record() -> None:
    buf = LogBuffer(5)
    big = [object()]
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", (big,), None)
    buf.emit(record)
    created, level, text = buf.records[0]
    assert level == "INFO" and "value [<object" in text and created == record.created
    assert all(not isinstance(part, logging.LogRecord) for part in buf.records[0])


def test_log_buffer_rejects_a_bad_count() -> None:
    with pytest.raises(ValueError, match="count"):
        LogBuffer(5).tail(-1)


# ---------------------------------------------------------------------- task stream


def test_choose_follows_dasks_rules_for_start_stop_and_count() -> None:
    items = [1.0, 2.0, 3.0, 4.0, 5.0]

    def pick(**kw: Any) -> list[float]:
        return task_stream.choose(items, lambda x: x, **kw)

    assert pick() == items
    assert pick(count=2) == [4.0, 5.0]
    assert pick(start=2.5) == [3.0, 4.0, 5.0]
    assert pick(start=2.0, count=2) == [2.0, 3.0]
    assert pick(stop=4.0) == [1.0, 2.0, 3.0]
    assert pick(stop=4.0, count=1) == [3.0]
    assert pick(start=2.0, stop=4.0, count=1) == [2.0, 3.0]  # count ignored with both
    assert pick(count=0) == []


def test_record_stop_is_the_end_of_the_last_action() -> None:
    record = {"startstops": [{"action": "transfer", "start": 1.0, "stop": 2.0},
                             {"action": "compute", "start": 2.5, "stop": 3.0}]}
    assert task_stream.record_stop(record) == 3.0
    with pytest.raises(ValueError, match="count"):
        task_stream.check_count(-1)


# ---------------------------------------------------------------------- versions


def test_versions_describe_this_process() -> None:
    v = versions.get_versions(["no-such-package-at-all"])
    assert v["packages"]["python"] == v["host"]["python"]
    assert v["packages"]["shoal"]
    assert v["packages"]["no-such-package-at-all"] is None
    with pytest.raises(TypeError, match="names"):
        versions.get_versions([3])  # type: ignore[list-item]


def test_mismatches_count_the_scheduler_only_where_it_matters() -> None:
    def v(**packages: str) -> dict[str, Any]:
        return {"packages": {"python": "3.11", "shoal": "1", **packages}}

    same = v(numpy="2")
    assert versions.mismatches(same, same, {"w1": same, "w2": same}) == []
    # the scheduler never unpickles user data: its numpy does not matter
    assert versions.mismatches(same, v(numpy="1"), {"w1": same}) == []
    rows = versions.mismatches(same, same, {"w1": same, "w2": v(numpy="1")})
    assert rows == [("numpy", "2", "2", ["1", "2"])]
    rows = versions.mismatches(same, v(shoal="2"), {"w1": same})
    assert rows == [("shoal", "1", "2", "1")]
    with pytest.warns(versions.VersionMismatchWarning, match="numpy"):
        versions.warn_mismatches([("numpy", "2", "2", ["1", "2"])])


# ---------------------------------------------------------------------- html


def _svg(page: str) -> ET.Element:
    start = page.index("<svg")
    end = page.rindex("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def _node(name: str, count: int, *children: dict[str, Any]) -> dict[str, Any]:
    return {"count": count, "identifier": f"{name};f.py;1",
            "description": {"filename": "f.py", "name": name, "line_number": 1, "line": "x = 1"},
            "children": {c["identifier"]: c for c in children}}


def test_flame_graph_draws_one_box_per_node_with_its_share() -> None:
    tree = profiling.create()
    tree["count"] = 4
    tree["children"] = {"a;f.py;1": _node("a", 4, _node("b", 3), _node("<c & d>", 1))}
    page = html.flame_graph(tree, "title <x>")
    boxes = _svg(page).findall("svg")
    titles = [b.find("title").text or "" for b in boxes]  # type: ignore[union-attr]
    assert len(boxes) == 4  # root, a, b, <c & d>
    assert any(t.startswith("b ") and "75.0%" in t for t in titles)
    assert any(t.startswith("<c & d>") for t in titles)  # escaped in the file, text here
    assert "title &lt;x&gt;" in page and "<script>" in page
    assert "No samples" in html.flame_graph(profiling.create())


def test_flame_graph_of_real_samples() -> None:
    tree = profiling.create()
    profiling.add_stack(tree, stack_in("a", "b"))
    assert len(_svg(html.flame_graph(tree)).findall("svg")) == 3


def test_task_stream_page_draws_each_action() -> None:
    records = [
        {"key": "inc-1", "worker": "w1", "thread": 1, "status": "OK",
         "startstops": [{"action": "transfer", "start": 0.0, "stop": 1.0, "source": "w2"},
                        {"action": "compute", "start": 1.0, "stop": 2.0}]},
        {"key": "dec-1", "worker": "w2", "thread": 1, "status": "error",
         "startstops": [{"action": "compute", "start": 0.5, "stop": 1.5}]},
    ]
    page = html.task_stream(records, key_prefix=lambda k: k.split("-")[0])
    boxes = _svg(page).findall("svg")
    assert len(boxes) == 3
    assert {b.find("text").text for b in boxes} == {"transfer-inc", "inc", "dec"}  # type: ignore[union-attr]
    assert "No tasks" in html.task_stream([])


# ---------------------------------------------------------------------- cluster dumps


@pytest.mark.parametrize("fmt", ["msgpack", "yaml"])
def test_cluster_dump_round_trip(tmp_path: Path, fmt: str) -> None:
    state = {"scheduler": {"tasks": {"x": {"state": "memory", "deps": ["y"]}}},
             "workers": {"tcp://a:1": {"tasks": {}}}, "versions": {}}
    path = cluster_dump.write(state, tmp_path / "dump", fmt)
    assert path.endswith(cluster_dump.FORMATS[fmt])
    assert cluster_dump.load(path) == state
    assert cluster_dump.path_for(path, fmt) == path  # no second suffix
    with pytest.raises(ValueError, match="format"):
        cluster_dump.path_for("x", "json")
    with pytest.raises(ValueError, match="not a cluster dump"):
        cluster_dump.load(tmp_path / "dump.json")
