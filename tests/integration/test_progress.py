"""progress(): what the bars count, drawn in a terminal (a captured file)
and as ipywidgets objects, on a real cluster."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from shoal import Client, as_completed, futures_of, progress, wait

dask = pytest.importorskip("dask")
from dask import delayed  # noqa: E402

pytestmark = pytest.mark.timeout(60)

_BAR = re.compile(r"^(.*?)\s*\[[# ]*\] \| +(\d+)% Completed \| (\d+)/(\d+)")


def drawn(text: str) -> dict[str, tuple[int, int]]:
    """The last ``done/total`` drawn for each bar label ("" for an unlabelled bar)."""
    last: dict[str, tuple[int, int]] = {}
    for line in re.split(r"[\r\n]|\x1b\[[0-9;]*[A-Za-z]", text):
        m = _BAR.match(line)
        if m:
            last[m.group(1).strip()] = (int(m.group(3)), int(m.group(4)))
    return last


def inc(x: int) -> int:
    return x + 1


def dec(x: int) -> int:
    return x - 1


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def gated(path: str, x: int) -> int:
    import time

    while not Path(path).exists():
        time.sleep(0.01)
    return x


def run(*futures, **kwargs) -> dict[str, tuple[int, int]]:
    out = io.StringIO()
    assert progress(*futures, notebook=False, file=out, **kwargs) is None
    return drawn(out.getvalue())


def test_terminal_bar_per_function_blocks_until_done(client: Client) -> None:
    a = client.map(inc, range(20))
    b = client.map(dec, range(5))
    assert run(a, b) == {"inc": (20, 20), "dec": (5, 5)}
    assert all(f.done() for f in a + b)
    assert run(a + b, multi=False) == {"": (25, 25)}


def test_counts_the_tasks_the_futures_need(client: Client) -> None:
    parts = [delayed(inc)(i) for i in range(6)]
    total = client.compute(delayed(sum)(parts))
    assert run(total) == {"inc": (6, 6), "sum": (1, 1)}
    assert total.result() == 21


def test_complete_false_counts_only_work_not_done(client: Client) -> None:
    db = pytest.importorskip("dask.bag")
    bag = client.persist(db.from_sequence(range(8), npartitions=4).map(inc))
    wait(bag, timeout=20)
    total = client.compute(bag.sum())
    full = run(total)
    assert sum(n for _, n in full.values()) > 4 and all(d == n for d, n in full.values())
    again = client.compute(bag.map(dec).sum())
    partial = run(again, complete=False)
    persisted_group = next(g for g in full if g.startswith("from_sequence"))
    assert persisted_group not in partial  # done before the bar: not counted
    assert all(d == n for d, n in partial.values())


def test_group_by_a_callable_and_refused_groupings(client: Client) -> None:
    futures = client.map(inc, range(4)) + client.map(dec, range(3))
    assert run(futures, group_by=lambda key: "all of it") == {"all of it": (7, 7)}
    with pytest.raises(NotImplementedError, match="spans"):
        progress(futures, notebook=False, group_by="spans")
    with pytest.raises(ValueError, match="group_by"):
        progress(futures, notebook=False, group_by=5)
    with pytest.raises(NotImplementedError, match="scheduler"):
        progress(futures, notebook=False, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="unexpected keyword"):
        progress(futures, notebook=False, no_such_option=1)
    with pytest.warns(DeprecationWarning, match="group_by"):
        out = io.StringIO()
        progress(futures, notebook=False, file=out, func=lambda key: "f")
    assert drawn(out.getvalue()) == {"f": (7, 7)}


def test_containers_as_completed_and_collections(client: Client) -> None:
    db = pytest.importorskip("dask.bag")
    f1, f2, f3 = client.map(inc, [100, 101, 102])
    assert run({"a": f1, "b": [f2, (f3,)]}) == {"inc": (3, 3)}
    ac = as_completed(client.map(dec, range(10)))
    assert run(ac) == {"dec": (10, 10)}
    assert ac.count() == 10  # progress does not consume the iterator
    bag = client.persist(db.from_sequence(range(12), npartitions=3).map(inc))
    ((done, total),) = run(bag, multi=False).values()
    assert done == total >= 3  # its 3 partitions and what they were made from
    assert len(futures_of(bag)) == 3
    assert run([]) == {"": (0, 0)}


def test_a_failed_task_stops_the_bar(client: Client) -> None:
    bad = client.submit(fail, 1)
    out = io.StringIO()
    progress(bad, notebook=False, file=out)
    assert bad.status == "error"
    assert f"failed: {bad.key}" in out.getvalue()


def _watches(client: Client) -> tuple[int, bool]:
    def count(dask_scheduler):
        ext = next(e for e in dask_scheduler.extensions if type(e).__name__ == "ProgressWatches")
        return len(ext.watches), "shoal-progress" in dask_scheduler.plugins.plugins

    return client.run_on_scheduler(count)


def test_the_scheduler_forgets_finished_watches(client: Client, wait_until) -> None:
    run(client.map(inc, range(5)))
    assert wait_until(lambda: _watches(client) == (0, False))


# -- the notebook widget -------------------------------------------------------------


def test_widget_returns_at_once_and_follows_the_work(client: Client, tmp_path: Path,
                                                     wait_until) -> None:
    pytest.importorskip("ipywidgets")
    gate = tmp_path / "gate"
    ready = client.map(inc, range(3))
    wait(ready, timeout=20)
    blocked = client.map(gated, [str(gate)] * 4, range(4))
    try:
        _follow_gated_work(client, blocked, ready, gate, wait_until)
    finally:
        gate.touch()


def _follow_gated_work(client: Client, blocked, ready, gate: Path, wait_until) -> None:
    import ipywidgets

    bar = progress(blocked + ready, notebook=True)
    assert isinstance(bar.widget, ipywidgets.VBox)
    assert set(bar.bars) == {"gated", "inc"}
    assert all(isinstance(b, ipywidgets.FloatProgress) for b in bar.bars.values())
    assert bar.status == "running"  # returned while the work is still waiting
    assert bar.bars["gated"].value == 0.0
    assert "0 / 4" in bar.bar_texts["gated"].value
    assert "3 / 3" in bar.bar_texts["inc"].value and bar.bars["inc"].value == 1.0
    gate.touch()
    assert wait_until(lambda: bar.status == "finished", timeout=20)
    assert bar.bars["gated"].value == 1.0 and "4 / 4" in bar.bar_texts["gated"].value
    assert {b.bar_style for b in bar.bars.values()} == {"success"}
    assert "Finished" in bar.elapsed_time.value


def test_widget_single_bar_and_failure(client: Client, wait_until) -> None:
    pytest.importorskip("ipywidgets")
    good = client.map(inc, range(5))
    wait(good, timeout=20)
    single = progress(good, notebook=True, multi=False)
    assert list(single.bars) == [""]
    assert wait_until(lambda: single.status == "finished")
    assert single.bars[""].value == 1.0 and "5 / 5" in single.bar_texts[""].value
    bad = client.submit(fail, 2)
    failed = progress(bad, notebook=True)
    assert wait_until(lambda: failed.status == "error", timeout=20)
    assert failed.bars["fail"].bar_style == "danger"
    assert "Exception" in failed.elapsed_time.value and "bad 2" in failed.elapsed_time.value
