"""The dashboard's pure parts: views of the scheduler's records
(``shoal/dashboard/snapshot.py``), what the pages draw (``views.py``),
``/metrics`` (``metrics.py``), who may look (``auth.py``) and where it
listens (``launch.py``)."""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.dashboard import auth, launch, snapshot, views
from shoal.dashboard.metrics import exposition
from shoal.scheduler.records import (
    ERRED,
    MEMORY,
    PROCESSING,
    QUEUED,
    WAITING,
    TaskRecord,
    WorkerRecord,
)


def _task(key: str, state: object, deps: tuple[TaskRecord, ...] = ()) -> TaskRecord:
    ts = TaskRecord(key, b"f", b"", 0)
    ts.state = state  # type: ignore[assignment]
    ts.deps = deps
    return ts


def _worker(address: str, name: str, nbytes: int, memory: int) -> WorkerRecord:
    w = WorkerRecord(address, name, 2, memory_limit=1000)
    w.nbytes = nbytes
    w.memory = memory
    w.metrics = {"cpu": 50.0, "spilled_bytes": {"memory": 0, "disk": 7}, "started": 100.0}
    w.last_seen = 10.0
    return w


def test_cluster_view_splits_memory_and_sums_workers() -> None:
    a = _worker("tcp://a:1", "10", nbytes=300, memory=500)
    b = _worker("tcp://b:1", "2", nbytes=900, memory=400)  # more managed than rss: unmanaged 0
    view = snapshot.cluster_view([a, b], n_tasks=5, n_clients=1, now_unix=1000.0, now_monotonic=12.0)
    assert [w["name"] for w in view["workers"]] == ["2", "10"]  # natural order of names
    wa = view["workers"][1]
    assert (wa["managed"], wa["unmanaged"], wa["spilled"]) == (300, 200, 7)
    assert view["workers"][0]["unmanaged"] == 0
    assert wa["last_seen"] == pytest.approx(998.0)
    assert view["totals"]["nthreads"] == 4
    assert view["totals"]["memory"] == 900
    assert view["totals"]["memory_limit"] == 2000
    assert view["totals"]["workers"] == 2 and view["totals"]["tasks"] == 5


def test_task_summary_counts_by_function_and_state() -> None:
    tasks = [_task("inc-aa11", MEMORY), _task("inc-bb22", MEMORY), _task("inc-cc33", PROCESSING),
             _task("add-dd44", WAITING), _task("add-ee55", QUEUED), _task("load-ff66", ERRED)]
    summary = snapshot.task_summary(tasks)
    assert summary == {"inc": {"memory": 2, "processing": 1}, "add": {"waiting": 1, "queued": 1},
                       "load": {"erred": 1}}
    rows = snapshot.progress_rows(summary)
    assert [r["name"] for r in rows] == ["inc", "add", "load"]
    assert rows[1]["waiting"] == 2 and rows[1]["total"] == 2
    assert snapshot.state_counts(summary) == {"memory": 2, "processing": 1, "waiting": 1,
                                              "queued": 1, "erred": 1}


def test_task_graph_per_task_then_grouped() -> None:
    a = _task("load-01", MEMORY)
    b = _task("load-02", MEMORY)
    c = _task("sum-03", PROCESSING, (a, b))
    tasks = {t.key: t for t in (a, b, c)}
    small = snapshot.task_graph(tasks, limit=10)
    assert not small["grouped"]
    assert [n["id"] for n in small["nodes"]] == ["load-01", "load-02", "sum-03"]
    assert sorted(map(tuple, small["edges"])) == [(0, 2), (1, 2)]
    grouped = snapshot.task_graph(tasks, limit=2)
    assert grouped["grouped"]
    assert grouped["nodes"] == [{"id": "load", "name": "load", "counts": {"memory": 2}},
                                {"id": "sum", "name": "sum", "counts": {"processing": 1}}]
    assert grouped["edges"] == [[0, 1]]


def test_graph_layout_puts_dependents_right_of_dependencies() -> None:
    pos = views.graph_layout(4, [[0, 2], [1, 2], [2, 3]])
    assert pos[0][0] == pos[1][0] == 0 and pos[2][0] == 1 and pos[3][0] == 2
    assert pos[0][1] != pos[1][1]
    # a cycle (which a task graph never has) still gets every node a place
    assert len(views.graph_layout(2, [[0, 1], [1, 0]])) == 2


def test_flame_rows_follow_the_call_tree() -> None:
    leaf = {"count": 3, "children": {}, "description": {"name": "work", "filename": "w.py",
                                                       "line_number": 3, "line": "x = 1"}}
    tiny = {"count": 0, "children": {}, "description": {"name": "rare", "filename": "w.py",
                                                       "line_number": 9, "line": ""}}
    tree = {"count": 4, "children": {"work;w.py;3": leaf, "rare;w.py;9": tiny},
            "description": {"name": "", "filename": "", "line_number": 0, "line": ""}}
    rows = views.flame_rows(tree)
    assert rows["ids"] == ["all", "all/work;w.py;3"]
    assert rows["parents"] == ["", "all"]
    assert rows["values"] == [4, 3]
    assert rows["labels"][1] == "work"
    assert views.flame_rows({"count": 0, "children": {}})["ids"] == []


def test_metrics_follow_prometheus_conventions() -> None:
    w = _worker("tcp://a:1", "0", nbytes=300, memory=500)
    status = snapshot.cluster_view([w], 3, 1, 1000.0, 12.0)
    summary = snapshot.task_summary([_task("inc-aa", MEMORY), _task("inc-bb", PROCESSING)])
    status.update(progress=snapshot.progress_rows(summary), counts=snapshot.state_counts(summary),
                  scheduler={"loop_lag": 0.002, "messages_received": 42, "transitions": 7})
    body, content_type = exposition(status)
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values()
               for s in f.samples}
    assert samples[("shoal_tasks", (("state", "memory"),))] == 1
    assert samples[("shoal_function_tasks", (("function", "inc"), ("state", "processing")))] == 1
    assert samples[("shoal_workers", (("status", "running"),))] == 1
    assert samples[("shoal_threads", ())] == 2
    assert samples[("shoal_memory_bytes", (("type", "unmanaged"),))] == 200
    assert samples[("shoal_messages_received_total", ())] == 42
    assert samples[("shoal_event_loop_lag_seconds", ())] == pytest.approx(0.002)
    assert samples[("shoal_worker_cpu_ratio", (("worker", "tcp://a:1"),))] == pytest.approx(0.5)


def test_host_header_and_origin_checks() -> None:
    allowed = auth.host_names("127.0.0.1", ["dash.example"])
    assert auth.host_allowed("127.0.0.1:8787", allowed)
    assert auth.host_allowed("localhost:8787", allowed)
    assert auth.host_allowed("[::1]:8787", allowed)
    assert auth.host_allowed("DASH.example", allowed)
    assert not auth.host_allowed("evil.example:8787", allowed)  # DNS rebinding
    assert not auth.host_allowed(None, allowed)
    assert auth.origin_allowed(None, "127.0.0.1:8787")  # not from a page: curl, Prometheus
    assert auth.origin_allowed("http://127.0.0.1:8787", "127.0.0.1:8787")
    assert not auth.origin_allowed("http://evil.example", "127.0.0.1:8787")
    assert not auth.origin_allowed("null", "127.0.0.1:8787")


def test_sessions() -> None:
    sessions = auth.Sessions(lifetime=10.0)
    sid = sessions.new(now=100.0)
    assert sessions.valid(sid, 105.0)
    assert not sessions.valid(sid, 111.0)
    assert not sessions.valid("forged", 105.0)
    assert not sessions.valid(None, 105.0)


def test_dashboard_address_forms() -> None:
    assert launch.parse_address(":8787", "127.0.0.1") == ("127.0.0.1", 8787)
    assert launch.parse_address("0.0.0.0:9000", "127.0.0.1") == ("0.0.0.0", 9000)
    assert launch.parse_address(8790, "10.0.0.1") == ("10.0.0.1", 8790)
    assert launch.parse_address("[::1]:8787", "127.0.0.1") == ("::1", 8787)
    assert launch.parse_address("http://localhost:8787/", "127.0.0.1") == ("localhost", 8787)
    with pytest.raises(ValueError, match="port"):
        launch.parse_address(":http", "127.0.0.1")
    with pytest.raises(TypeError, match="dashboard_address"):
        launch.parse_address(1.5, "127.0.0.1")  # type: ignore[arg-type]


def test_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="the cluster's token"):
        launch.bind("0.0.0.0:0")
    # the default (":port" of a cluster listening everywhere) falls back to loopback
    sock = launch.bind(":0", default_host="0.0.0.0")
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
    sock = launch.bind("0.0.0.0:0", token="a-long-enough-cluster-token")
    try:
        assert sock.getsockname()[0] == "0.0.0.0"
        assert not launch.link(sock).startswith("http://0.0.0.0")
    finally:
        sock.close()


def test_a_taken_port_moves_to_the_next_free_one() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        sock = launch.bind(f"127.0.0.1:{port}")
        try:
            assert sock.getsockname()[1] != port
            assert launch.link(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/status"
            assert launch.link(sock, "/dash/") == f"http://127.0.0.1:{sock.getsockname()[1]}/dash/status"
        finally:
            sock.close()
    finally:
        taken.close()


def test_stream_records_put_spills_on_the_workers_disk_row() -> None:
    runs = {"tcp://w:1": [["inc-1", 7, 10.0, 10.5, 28, "int", [[9.0, 9.5, "tcp://w:2"]]],
                          ["boom-2", 7, 11.0, 11.1, 0, None, []]]}
    spills = {"tcp://w:1": [["disk-write", "inc-1", 12.0, 12.2, 4096],
                            ["disk-read", "inc-1", 13.0, 13.1, 4096]]}
    records = views.stream_records(runs, spills)
    assert [r["status"] for r in records[:2]] == ["OK", "error"]
    assert [s["action"] for s in records[0]["startstops"]] == ["transfer", "compute"]
    disk = records[2:]
    assert [r["startstops"][0]["action"] for r in disk] == ["disk-write", "disk-read"]
    assert all(r["thread"] == "disk" and r["worker"] == "tcp://w:1" and r["key"] == "inc-1"
               and r["nbytes"] == 4096 for r in disk)
    assert views.stream_records(runs) == records[:2]
