"""The dashboard over real HTTP: a LocalCluster's dashboard process, its
JSON API, ``/metrics``, the websocket, the Host and Origin checks, the token
login beyond loopback; ``dashboard_address`` on Client, LocalCluster and
Scheduler; the reprs; ``performance_report``."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import shoal
from shoal import Client, LocalCluster, performance_report
from shoal.dashboard.launch import Dashboard
from tests.conftest import filled, poll_until, read_back_on_the_worker


def slowinc(x: int, delay: float = 0.02) -> int:
    time.sleep(delay)
    return x + 1


def _get(link: str, path: str, headers: dict[str, str] | None = None,
         method: str = "GET", body: str | None = None) -> tuple[int, dict[str, str], bytes]:
    url = urllib.parse.urlsplit(link)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _json(link: str, path: str) -> Any:
    status, _, body = _get(link, path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def dash_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture
def dash_client(dash_cluster: LocalCluster) -> Iterator[Client]:
    with Client(dash_cluster, timeout=10) as c:
        yield c


def test_dashboard_link_and_status_api_match_scheduler_info(dash_client: Client) -> None:
    link = dash_client.dashboard_link
    assert link is not None and link.startswith("http://127.0.0.1:") and link.endswith("/status")
    futures = dash_client.map(slowinc, range(20))
    dash_client.gather(futures)
    info = dash_client.scheduler_info(n_workers=-1)
    assert info["services"]["dashboard"] == int(urllib.parse.urlsplit(link).port or 0)

    def matches() -> bool:
        status = _json(link, "/api/status")
        workers = {w["address"]: w for w in status["workers"]}
        return (set(workers) == set(info["workers"])
                and status["totals"]["nthreads"] == info["total_threads"]
                and all(workers[a]["in_memory"] == w["metrics"]["in_memory"]
                        for a, w in dash_client.scheduler_info(n_workers=-1)["workers"].items())
                and any(r["name"] == "slowinc" and r["memory"] == 20 for r in status["progress"]))

    assert poll_until(matches, timeout=20)
    status, _, page = _get(link, "/status")
    assert status == 200 and b"static/plotly.min.js" in page
    status, _, js = _get(link, "/static/plotly.min.js")
    assert status == 200 and len(js) > 1_000_000  # served from the installed plotly package
    # a client connected by address hears of the dashboard from the scheduler
    with Client(dash_client.scheduler_address, timeout=10) as other:
        assert other.dashboard_link == link


def test_metrics_in_prometheus_format(dash_client: Client) -> None:
    dash_client.gather(dash_client.map(slowinc, range(5), delay=0.001))
    status, headers, body = _get(dash_client.dashboard_link, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"shoal_tasks", "shoal_function_tasks", "shoal_workers", "shoal_threads",
            "shoal_memory_bytes", "shoal_transfer_incoming_bytes", "shoal_event_loop_lag_seconds",
            "shoal_messages_received"} <= names
    threads = next(s.value for f in text_string_to_metric_families(body.decode())
                   for s in f.samples if s.name == "shoal_threads")
    assert threads == dash_client.scheduler_info()["total_threads"]


def test_json_api_task_stream_graph_profile_story_workers(dash_client: Client) -> None:
    link = dash_client.dashboard_link
    futures = dash_client.map(slowinc, range(30))
    total = dash_client.submit(sum, futures)
    assert total.result() == sum(range(1, 31))
    assert poll_until(lambda: any(r["key"] == futures[0].key
                                  for r in _json(link, "/api/task-stream")["records"]), 20)
    graph = _json(link, "/api/graph")
    keys = {n["id"] for n in graph["nodes"]}
    assert total.key in keys and futures[0].key in keys
    assert len(graph["positions"]) == len(graph["nodes"])
    story = _json(link, "/api/story?key=" + urllib.parse.quote(total.key))
    assert [e[2] for e in story["story"]][-1] == "memory"
    profile = _json(link, "/api/profile?seconds=600")
    assert profile["count"] >= 0 and len(profile["flame"]["ids"]) == len(profile["flame"]["values"])
    workers = _json(link, "/api/workers")
    assert set(workers["logs"]) == {w["address"] for w in workers["workers"]}
    assert _get(link, "/api/story")[0] == 400


def test_host_header_is_checked(dash_client: Client) -> None:
    link = dash_client.dashboard_link
    port = urllib.parse.urlsplit(link).port
    assert _get(link, "/api/status", {"Host": f"evil.example:{port}"})[0] == 421
    assert _get(link, "/api/status", {"Host": f"localhost:{port}"})[0] == 200


def test_websocket_pushes_updates_and_refuses_other_sites(dash_client: Client) -> None:
    link = dash_client.dashboard_link
    base = link.rsplit("/status", 1)[0]
    futures = dash_client.map(slowinc, range(200), delay=0.01)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(base + "/ws?topics=status,stream") as ws:
                seen = 0
                updates = 0
                while (updates < 40 and seen == 0) or updates < 2:
                    msg = json.loads((await ws.receive(timeout=10)).data)
                    assert msg["type"] == "update" and "status" in msg
                    seen += len(msg.get("stream", []))
                    updates += 1
                assert seen > 0
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(base + "/ws?topics=status", origin="http://evil.example")

    asyncio.run(main())
    dash_client.gather(futures)


def _check_login_wall(link: str) -> None:
    """Pages send a browser to the login form; the API refuses."""
    status, headers, _ = _get(link, "/status")
    assert status == 302 and headers["location"].startswith("/login")
    assert _get(link, "/api/status")[0] == 401


def test_login_beyond_loopback(dash_client: Client, dash_cluster: LocalCluster) -> None:
    token = dash_cluster.security.token  # the cluster's: its dashboard connects with it too
    assert token
    dash = Dashboard("0.0.0.0:0", dash_client.scheduler_address, thread=True,
                     security=dash_cluster.security)
    try:
        link = f"http://127.0.0.1:{dash.port}"
        _check_login_wall(link)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = _get(link, "/login", form, "POST", "token=wrong&next=/status")
        assert status == 401 and b"That is not the cluster" in body
        quoted = urllib.parse.quote(token)
        status, headers, _ = _get(link, "/login", form, "POST", f"token={quoted}&next=//evil.example")
        assert status == 302 and headers["location"] == "/status"  # never another site
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        session = cookie.split(";", 1)[0]
        assert _get(link, "/api/status", {"Cookie": session})[0] == 200  # the status, as a client
        assert _get(link, "/metrics", {"Authorization": f"Bearer {token}"})[0] == 200
        assert _get(link, "/metrics", {"Authorization": "Bearer nope"})[0] == 401
    finally:
        dash.close()


def test_login_on_loopback_when_the_settings_ask_for_it(dash_client: Client,
                                                        dash_cluster: LocalCluster) -> None:
    """``dashboard.login: always`` (a machine other users log in to): the
    token is asked on loopback too; without one the dashboard does not start."""
    from shoal import config

    token = dash_cluster.security.token
    with config.set({"dashboard.login": "always"}):
        dash = Dashboard("127.0.0.1:0", dash_client.scheduler_address, thread=True,
                         security=dash_cluster.security)
        with pytest.raises(ValueError, match="has none"):
            Dashboard("127.0.0.1:0", dash_client.scheduler_address, thread=True)
    try:
        link = f"http://127.0.0.1:{dash.port}"
        _check_login_wall(link)
        status, headers, _ = _get(link, "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                                  "POST", f"token={urllib.parse.quote(token)}&next=/status")
        assert status == 302
        session = headers["set-cookie"].split(";", 1)[0]
        assert _get(link, "/api/status", {"Cookie": session})[0] == 200
    finally:
        dash.close()
    with config.set({"dashboard.login": "sometimes"}), pytest.raises(ValueError, match="auto"):
        Dashboard("127.0.0.1:0", dash_client.scheduler_address, thread=True,
                  security=dash_cluster.security)


def test_no_dashboard_and_in_process_dashboard() -> None:
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as c:
        assert c.dashboard_link is None
    with Client(n_workers=1, threads_per_worker=1, processes=False,
                dashboard_address="127.0.0.1:0") as client:
        client.submit(slowinc, 1).result()
        status = _json(client.dashboard_link, "/api/status")  # served on a thread of this process
        assert [w["address"] for w in status["workers"]] == list(client.scheduler_info()["workers"])


def test_scheduler_serves_its_dashboard_in_a_process() -> None:
    async def main() -> None:
        async with shoal.Scheduler(port=0, dashboard_address="127.0.0.1:0") as s:
            assert s.dashboard_link and s.services["dashboard"] == int(s.dashboard_link.split(":")[2].split("/")[0])
            url = s.dashboard_link.replace("/status", "/api/status")
            async with aiohttp.ClientSession() as session, session.get(url) as r:
                assert r.status == 200
                assert (await r.json())["totals"]["workers"] == 0
            assert s._dashboard_server.proc is not None  # its own process
        assert s._dashboard_server.proc.returncode is not None  # gone with the scheduler

    asyncio.run(main())


def test_reprs_show_the_dashboard(dash_client: Client, dash_cluster: LocalCluster) -> None:
    text = repr(dash_client)
    assert "processes=2 threads=2" in text
    page = dash_client._repr_html_()
    for part in ("Connection method:", "Cluster object", "shoal.LocalCluster",
                 dash_cluster.dashboard_link, "Cluster Info", "Scheduler Info", "Worker: 0"):
        assert part in page
    assert dash_cluster.dashboard_link in repr(dash_cluster)
    with Client(dash_client.scheduler_address, timeout=10) as direct:
        page = direct._repr_html_()
        assert "Direct" in page and "Scheduler Info" in page and dash_cluster.dashboard_link in page


def test_performance_report(dash_client: Client, tmp_path: Any) -> None:
    path = tmp_path / "report.html"
    with performance_report(filename=str(path)):
        dash_client.gather(dash_client.map(slowinc, range(40, 60), delay=0.01))
    page = path.read_text()
    assert "Tasks run</th><td>20<" in page
    assert "slowinc" in page and "Task stream" in page and "Worker profile" in page
    assert "dash_client.gather(dash_client.map(slowinc, range(40, 60)" in page  # the block's code
    assert "<script src" not in page  # standalone
    with pytest.raises(NotImplementedError, match="local files"):
        performance_report("s3://bucket/report.html")
    with pytest.raises(ValueError, match="mode"):
        performance_report(mode="bogus")


def test_prefix_serves_every_route_under_it() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from shoal.dashboard.app import make_app
    from shoal.dashboard.feed import Feed

    async def main() -> None:
        app = make_app(Feed("tcp://127.0.0.1:1"), "127.0.0.1", prefix="/dash/")  # never connected
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            r = await http.get("/dash/", allow_redirects=False)
            assert r.status == 302 and r.headers["Location"] == "/dash/status"
            r = await http.get("/dash/workers")
            assert r.status == 200 and "static/workers.js" in await r.text()
            assert (await http.get("/dash/static/common.js")).status == 200
            assert (await http.get("/dash/health")).status == 200
            assert (await http.get("/status")).status == 404

    asyncio.run(main())


@pytest.mark.timeout(90)
def test_shoal_scheduler_command_serves_the_dashboard_under_a_prefix() -> None:
    import signal
    import subprocess
    import sys

    import psutil

    from tests.integration.test_cli import free_port

    port = free_port()
    scheduler = subprocess.Popen([sys.executable, "-m", "shoal", "scheduler", "--port", str(port),
                                  "--dashboard-address", "127.0.0.1:0", "--dashboard-prefix", "/dask"],
                                 stderr=subprocess.DEVNULL)
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=20) as client:
            link = client.dashboard_link
            assert link is not None and link.endswith("/dask/status")
            assert client.scheduler_info()["services"]["dashboard"] == urllib.parse.urlsplit(link).port
            status = _json(link, "/dask/api/status")
            assert status["scheduler"]["address"] == f"tcp://127.0.0.1:{port}"
            dashboard = psutil.Process(scheduler.pid).children()
            assert len(dashboard) == 1  # started by the first request: a process of its own
    finally:
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(20) == 0
    psutil.wait_procs(dashboard, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in dashboard)


def test_task_stream_marks_spills_to_and_from_disk() -> None:
    """A worker past its memory target spills; the dashboard's task stream
    shows each move on the worker's disk row, reads back included."""
    with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="100MB",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, timeout=10) as c:
        futures = c.map(filled, range(30))  # 150 MB: past the 60 MB target
        read_back_on_the_worker(c, futures[0])

        def actions() -> set[str]:
            records = _json(c.dashboard_link, "/api/task-stream")["records"]
            return {s["action"] for r in records if r["thread"] == "disk" for s in r["startstops"]}

        assert poll_until(lambda: {"disk-write", "disk-read"} <= actions(), 20)
