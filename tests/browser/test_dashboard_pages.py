"""The dashboard's pages in a real browser (headless Chromium), while a
workload runs: the task stream grows, the numbers shown are those of
``scheduler_info()``, a worker killed mid-run leaves the page, each page
draws without a script error.  Screenshots go to a temporary directory, or
with ``SHOAL_SAVE_SCREENSHOTS=1`` to docs/images/ (README.md shows them):

    SHOAL_SAVE_SCREENSHOTS=1 ./scripts/test tests/browser
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoal import Client, LocalCluster
from tests.conftest import filled, poll_until, read_back_on_the_worker

DOCS_IMAGES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "images"


def busy(x: int, delay: float = 0.05) -> int:
    end = time.perf_counter() + delay
    while time.perf_counter() < end:  # on the CPU: the profile has something to show
        pass
    return x


def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address="127.0.0.1:0") as cluster,
          Client(cluster, timeout=10) as c):
        yield c


def _errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _value(browser: Any, element_id: str) -> int | None:
    value = browser.execute_script(
        f"var e = document.getElementById('{element_id}'); return e ? e.dataset.value : null;")
    return None if value is None else int(value)


def _open(browser: Any, client: Client, page: str) -> None:
    browser.get(client.dashboard_link.replace("/status", "/" + page))
    assert poll_until(lambda: browser.execute_script(
        "return document.getElementById('connection').textContent") == "live", 20)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    if os.environ.get("SHOAL_SAVE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path_factory.mktemp("screenshots")


def _shoot(browser: Any, images: pathlib.Path, name: str) -> None:
    assert browser.save_screenshot(str(images / name))
    assert (images / name).stat().st_size > 10_000  # a page, not a blank


@pytest.mark.timeout(120)
def test_status_page_streams_tasks_and_shows_scheduler_numbers(browser: Any, client: Client,
                                                              images: pathlib.Path) -> None:
    futures = client.map(busy, range(600))
    pairs = [client.submit(add, futures[i], futures[i + 1]) for i in range(0, 100, 2)]
    _open(browser, client, "status")

    def stream_total() -> int:
        return int(browser.execute_script(
            "return +(document.getElementById('stream-note').dataset.total || 0)"))

    assert poll_until(lambda: stream_total() > 0, 20)
    first = stream_total()
    assert poll_until(lambda: stream_total() > first, 20)  # it grows while the work runs
    info = client.scheduler_info(n_workers=-1)
    assert poll_until(lambda: _value(browser, "n-workers") == info["n_workers"]
                      and _value(browser, "n-threads") == info["total_threads"], 10)
    # progress bars and per-worker charts are drawn (plotly's bars)
    assert browser.execute_script("return document.querySelectorAll('#progress .bars path').length") > 0
    assert browser.execute_script("return document.querySelectorAll('#cpu .bars path').length") > 0
    _shoot(browser, images, "dashboard-status.png")  # mid-run
    browser.execute_script("document.getElementById('theme').click()")
    time.sleep(0.5)
    _shoot(browser, images, "dashboard-status-dark.png")
    browser.execute_script("document.getElementById('theme').click()")
    # a task's story, as a click on its bar shows it
    browser.execute_script(f"shoal.story({futures[0].key!r})")
    assert poll_until(lambda: browser.execute_script(
        "return document.querySelectorAll('#story-rows tr').length") > 1, 10)
    assert "memory" in browser.find_element("id", "story-rows").text
    client.gather(pairs)
    assert not _errors(browser)


@pytest.mark.timeout(120)
def test_workers_page_matches_scheduler_and_drops_a_killed_worker(browser: Any, client: Client,
                                                                  images: pathlib.Path) -> None:
    futures = client.map(busy, range(1000, 1400), delay=0.02)
    _open(browser, client, "workers")

    def shown() -> dict[str, int]:
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('#workers tr.worker')).map(function (r) {"
            " return [r.dataset.address, +r.querySelector('[data-field=nthreads]').textContent]; });")
        return {address: n for address, n in rows}

    info = client.scheduler_info(n_workers=-1)
    expected = {a: w["nthreads"] for a, w in info["workers"].items()}
    assert poll_until(lambda: shown() == expected, 20)
    browser.find_element("css selector", "button.toggle").click()  # a worker's log lines
    assert poll_until(lambda: browser.execute_script(
        "return document.querySelectorAll('#workers tr.logs').length") == 1, 10)
    _shoot(browser, images, "dashboard-workers.png")
    victim = sorted(info["workers"])[0]
    os.kill(info["workers"][victim]["pid"], signal.SIGKILL)  # mid-run
    assert poll_until(lambda: victim not in shown(), 30)
    client.gather(futures)  # the nanny's new worker and the other one finish the work
    assert not _errors(browser)


@pytest.mark.timeout(120)
def test_graph_and_profile_pages(browser: Any, client: Client, images: pathlib.Path) -> None:
    inputs = client.map(busy, range(2000, 2006), delay=0.2)
    total = client.submit(sum, inputs)
    _open(browser, client, "graph")
    assert poll_until(lambda: browser.execute_script(
        "return document.querySelectorAll('#graph .scatterlayer .point').length") >= 7, 20)
    _shoot(browser, images, "dashboard-graph.png")
    total.result()
    _open(browser, client, "profile")
    assert poll_until(lambda: browser.execute_script(
        "return +(document.getElementById('flame-note').textContent.split(' ')[0] || 0)") > 0, 30)
    assert poll_until(lambda: browser.execute_script(
        "return document.querySelectorAll('#flame .slice').length") > 1, 20)
    _shoot(browser, images, "dashboard-profile.png")
    assert not _errors(browser)


@pytest.mark.timeout(120)
def test_task_stream_marks_spills(browser: Any) -> None:
    """A worker past its memory target: the status page's task stream draws
    the moves to disk and back on the worker's "disk" row."""
    with (LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="100MB",
                       dashboard_address="127.0.0.1:0") as cluster,
          Client(cluster, timeout=10) as c):
        _open(browser, c, "status")
        futures = c.map(filled, range(30))  # 150 MB: past the 60 MB target
        read_back_on_the_worker(c, futures[0])

        def drawn() -> set[str]:
            return set(browser.execute_script(
                "var el = document.getElementById('stream');"
                "return (el.data || []).map(function (t) { return t.name; });"))

        assert poll_until(lambda: {"disk-write", "disk-read"} <= drawn(), 20)
        rows = browser.execute_script(
            "return [].concat.apply([], document.getElementById('stream').data.map("
            "function (t) { return t.y; })).filter(function (y) { return y; });")
        assert any(str(r).endswith(" · disk") for r in rows)
        assert not _errors(browser)
