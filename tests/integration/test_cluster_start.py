"""How ``Client()`` starts a local cluster: the fork server is launched before
the client's own modules load, and the client connects while the workers
start.  What users see must not change: the class they import, subclasses,
errors, and no process left behind when something goes wrong."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import psutil
import pytest

import shoal


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def inc(x: int) -> int:
    return x + 1


def test_importing_client_loads_neither_asyncio_nor_the_wire_format() -> None:
    """What makes the overlap possible: ``from shoal import Client`` is light."""
    code = ("import sys; from shoal import Client; "
            "print(sorted(m for m in sys.modules if m in ('asyncio', 'msgspec', 'cloudpickle', "
            "'shoal.protocol.messages', 'donfig')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_client_is_an_instance_of_the_class_users_import() -> None:
    with shoal.Client(processes=False, n_workers=1) as client:
        assert type(client) is shoal.Client
        assert client.submit(inc, 1).result(timeout=10) == 2


def test_tools_see_the_real_class() -> None:
    """help(), inspect.signature, dir() and IDE completion read the class itself."""
    import inspect
    import pydoc

    params = inspect.signature(shoal.Client).parameters
    for name in ("address", "timeout", "set_as_default", "scheduler_file", "asynchronous",
                 "heartbeat_interval", "connection_limit"):
        assert name in params
    assert list(params)[:3] == ["address", "loop", "timeout"]  # dask's positional order
    for name in ("submit", "map", "gather", "scatter", "who_has", "scheduler_info", "compute"):
        assert name in dir(shoal.Client)
        assert name in shoal.Client.__dict__ or any(name in c.__dict__ for c in shoal.Client.__mro__)
    text = pydoc.render_doc(shoal.Client, renderer=pydoc.plaintext)
    assert "submit(self, func" in text and "scheduler_file" in text


def test_subclasses_of_the_public_class_work() -> None:
    class Mine(shoal.Client):
        def twice(self, x: int) -> int:
            return 2 * int(self.submit(inc, x).result(timeout=10))

    with Mine(processes=False, n_workers=1) as client:
        assert isinstance(client, Mine) and isinstance(client, shoal.Client)
        assert client.twice(1) == 4


def test_a_prestarted_cluster_runs_tasks_and_closes_cleanly() -> None:
    before = children()
    with shoal.Client(n_workers=2, threads_per_worker=1) as client:
        assert client.cluster._forkserver is not None
        assert client.submit(inc, 1).result(timeout=10) == 2
        assert len(client.scheduler_info()["workers"]) == 2
    assert children() - before == set()


@pytest.mark.parametrize(("call", "error"), [
    (lambda: shoal.Client(None, None, 10, True, None, None, False, None, None, None, None, None,
                          None, 512, "one positional argument too many"), TypeError),
    (lambda: shoal.Client(n_workers=1, no_such_option=3), TypeError),
    (lambda: shoal.Client(None, "a loop shoal cannot use"), NotImplementedError),
    (lambda: shoal.Client(timeout="soon"), ValueError),
])
def test_a_bad_argument_after_the_prestart_leaves_no_process_behind(call, error) -> None:  # type: ignore[no-untyped-def]
    before = children()
    with pytest.raises(error):
        call()
    gc.collect()
    assert children() - before == set()


def test_workers_that_do_not_join_in_time_fail_the_client_and_leave_nothing() -> None:
    before = children()
    with pytest.raises(TimeoutError, match="did not join"):
        shoal.Client(n_workers=2, threads_per_worker=1, start_timeout=0.001)
    gc.collect()
    assert children() - before == set()


def test_without_the_fork_server_every_process_is_spawned() -> None:
    """SHOAL_FORKSERVER=0 (and platforms without fork): no prestart, the
    scheduler and workers are started as interpreters of their own."""
    code = ("import shoal\n"
            "with shoal.Client(n_workers=2, threads_per_worker=1) as c:\n"
            "    assert c.cluster._forkserver is None\n"
            "    print(c.submit(sum, [1, 2]).result(timeout=30), len(c.scheduler_info()['workers']))\n")
    env = dict(os.environ, SHOAL_FORKSERVER="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "2"]


def _poll_window(*_: object) -> float:
    from shoal.comm import spin

    return spin.WINDOW


def _worker_polls_after_scheduler_messages() -> bool:
    return bool(shoal.get_worker().scheduler.keeps_loop_polling)


def test_a_worker_polls_after_clients_but_not_after_the_scheduler() -> None:
    """Tasks from the scheduler run on the worker's threads, which need the
    GIL a polling loop would take; clients' actor calls and data requests
    keep the worker's loop polling like the scheduler's and the client's."""
    with shoal.Client(n_workers=1, threads_per_worker=1) as client:
        assert client.run_on_scheduler(_poll_window) == pytest.approx(300e-6)
        assert client.submit(_poll_window, pure=False).result(timeout=10) == pytest.approx(300e-6)
        assert client.submit(_worker_polls_after_scheduler_messages, pure=False).result(timeout=10) is False


def test_busy_polling_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SHOAL_POLL_US=0`` reaches the cluster's processes, which then work
    with every loop sleeping as soon as it is idle."""
    monkeypatch.setenv("SHOAL_POLL_US", "0")
    with shoal.Client(n_workers=1, threads_per_worker=1) as client:
        assert client.run_on_scheduler(_poll_window) == 0.0
        assert client.submit(_poll_window, pure=False).result(timeout=10) == 0.0
        assert client.gather(client.map(inc, range(50))) == list(range(1, 51))


def test_the_cluster_runs_the_shoal_the_client_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Started from a directory that holds another ``shoal`` (a checkout, an
    old copy), the scheduler and workers must not import that one."""
    fake = tmp_path / "shoal"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the wrong shoal was imported')\n")
    (fake / "__main__.py").write_text("raise SystemExit('the wrong shoal was run')\n")
    script = tmp_path / "elsewhere" / "job.py"
    script.parent.mkdir()
    script.write_text(
        "import shoal\n"
        "def where():\n"
        "    import shoal\n"
        "    return shoal.__file__\n"
        "if __name__ == '__main__':\n"
        "    with shoal.Client(n_workers=1, threads_per_worker=1, timeout=20) as c:\n"
        "        print(c.submit(where, pure=False).result(timeout=20) == shoal.__file__)\n"
    )
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
