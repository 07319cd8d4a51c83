"""Plugins and uploaded code, on real worker processes: present workers and
workers that join later, the scheduler's plugins, and the stock ones."""

from __future__ import annotations

import os
import pathlib
import sys
import zipfile
from collections.abc import Iterator

import pytest

from shoal import (
    Client,
    Environ,
    LocalCluster,
    NannyPlugin,
    PipInstall,
    SchedulerPlugin,
    UploadDirectory,
    WorkerPlugin,
    get_worker,
)


@pytest.fixture
def fresh() -> Iterator[tuple[LocalCluster, Client]]:
    """A one-worker cluster of its own: plugins outlive a test, and it scales."""
    with LocalCluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        yield cluster, client


class Mark(WorkerPlugin):
    """Marks each worker it reaches, and what happened to it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.name = f"mark-{label}"

    def setup(self, worker):  # type: ignore[no-untyped-def]
        worker.marks = [*getattr(worker, "marks", []), f"setup {self.label}"]

    def teardown(self, worker):  # type: ignore[no-untyped-def]
        worker.marks.append(f"teardown {self.label}")


def marks() -> list[str]:
    return list(getattr(get_worker(), "marks", []))


def test_worker_plugins_reach_present_and_future_workers(fresh: tuple[LocalCluster, Client]) -> None:
    cluster, client = fresh
    assert client.register_plugin(Mark("a")) == {next(iter(client.nthreads())): "OK"}
    cluster.scale(2)
    client.wait_for_workers(2, timeout=30)
    # every worker, the one that joined later included, was set up before it ran anything
    got = [client.submit(marks, pure=False, workers=[w]).result(timeout=10) for w in client.nthreads()]
    assert got == [["setup a"], ["setup a"]]
    client.unregister_worker_plugin("mark-a")
    got = [client.submit(marks, pure=False, workers=[w]).result(timeout=10) for w in client.nthreads()]
    assert got == [["setup a", "teardown a"]] * 2
    with pytest.raises(ValueError, match="does not exist"):
        client.unregister_worker_plugin("mark-a")


def test_same_name_replaces_unless_idempotent(fresh: tuple[LocalCluster, Client]) -> None:
    _, client = fresh
    client.register_plugin(Mark("b"))
    client.register_plugin(Mark("b"))  # replaces: teardown of the first, setup of the second
    assert client.submit(marks, pure=False).result(timeout=10) == ["setup b", "teardown b", "setup b"]

    class Once(Mark):
        idempotent = True

    client.register_plugin(Once("c"))
    client.register_plugin(Once("c"))  # a no-op
    assert client.submit(marks, pure=False).result(timeout=10)[-1] == "setup c"
    assert client.submit(marks, pure=False).result(timeout=10).count("setup c") == 1


class Broken(WorkerPlugin):
    name = "broken"

    def setup(self, worker):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot set up here")


class Watcher(WorkerPlugin):
    name = "watcher"

    def setup(self, worker):  # type: ignore[no-untyped-def]
        worker.seen = []
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):  # type: ignore[no-untyped-def]
        self.worker.seen.append((key.split("-")[0], start, finish))


def seen() -> list[tuple[str, str, str]]:
    return list(get_worker().seen)


def boom() -> None:
    raise ValueError("boom")


def test_errors_transitions_and_callbacks(fresh: tuple[LocalCluster, Client]) -> None:
    _, client = fresh
    with pytest.raises(RuntimeError, match="cannot set up here"):
        client.register_plugin(Broken())
    client.register_plugin(Watcher())
    assert client.submit(len, "abc").result(timeout=10) == 3
    with pytest.raises(ValueError):
        client.submit(boom).result(timeout=10)
    got = client.submit(seen, pure=False).result(timeout=10)
    assert ("len", "ready", "executing") in got and ("len", "executing", "memory") in got
    assert ("boom", "executing", "error") in got

    def setup(dask_worker):  # type: ignore[no-untyped-def]
        dask_worker.called_back = True

    client.register_worker_callbacks(setup)
    assert client.submit(lambda: get_worker().called_back, pure=False).result(timeout=10) is True


def test_plugins_that_are_not_plugins_are_refused(client: Client) -> None:
    class Duck:
        def setup(self, worker):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(TypeError, match="not a plugin"):
        client.register_plugin(Duck())
    with pytest.raises(TypeError, match="instance"):
        client.register_plugin(Mark)


class Recorder(SchedulerPlugin):
    name = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple] = []

    async def start(self, scheduler):  # type: ignore[no-untyped-def]
        self.events.append(("start",))
        scheduler.recorder = self

    def add_worker(self, scheduler, worker):  # type: ignore[no-untyped-def]
        self.events.append(("add_worker",))

    def add_client(self, scheduler, client):  # type: ignore[no-untyped-def]
        self.events.append(("add_client",))

    def remove_client(self, scheduler, client):  # type: ignore[no-untyped-def]
        self.events.append(("remove_client",))

    def update_graph(self, scheduler, *, client, keys, **kwargs):  # type: ignore[no-untyped-def]
        self.events.append(("update_graph", sorted(k.split("-")[0] for k in keys)))

    def transition(self, key, start, finish, *args, stimulus_id, **kwargs):  # type: ignore[no-untyped-def]
        self.events.append(("transition", key.split("-")[0], start, finish))

    async def close(self):  # type: ignore[no-untyped-def]
        self.events.append(("close",))


def events(dask_scheduler):  # type: ignore[no-untyped-def]
    return list(dask_scheduler.recorder.events)


def test_scheduler_plugins(fresh: tuple[LocalCluster, Client]) -> None:
    cluster, client = fresh
    client.register_plugin(Recorder())
    assert client.submit(len, "ab").result(timeout=10) == 2
    with Client(cluster):
        pass
    cluster.scale(2)
    client.wait_for_workers(2, timeout=30)
    got = client.run_on_scheduler(events)
    assert got[0] == ("start",)
    assert ("update_graph", ["len"]) in got
    assert ("transition", "len", "processing", "memory") in got
    assert ("add_client",) in got and ("remove_client",) in got and ("add_worker",) in got
    client.unregister_scheduler_plugin("recorder")
    assert client.run_on_scheduler(events)[-1] == ("close",)
    with pytest.raises(ValueError, match="recorder"):
        client.unregister_scheduler_plugin("recorder")


def test_upload_file_py_and_zip(fresh: tuple[LocalCluster, Client], tmp_path: pathlib.Path) -> None:
    cluster, client = fresh
    source = tmp_path / "shoal_uploaded_mod.py"
    source.write_text("VALUE = 1\ndef f(x):\n    return x + VALUE\n")
    client.upload_file(str(source))

    def use(x: int) -> int:
        import shoal_uploaded_mod

        return int(shoal_uploaded_mod.f(x))

    assert client.submit(use, 1, pure=False).result(timeout=10) == 2
    source.write_text("VALUE = 10\ndef f(x):\n    return x + VALUE\n")
    client.upload_file(str(source))  # a new version replaces the old one, and is reloaded
    assert client.submit(use, 1, pure=False).result(timeout=10) == 11

    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shoal_zipped_pkg/__init__.py", "ANSWER = 42\n")
    client.upload_file(str(archive))
    cluster.scale(2)
    client.wait_for_workers(2, timeout=30)
    for w in client.nthreads():  # the new worker has both files too
        assert client.submit(use, 1, pure=False, workers=[w]).result(timeout=10) == 11
        assert client.submit(lambda: __import__("shoal_zipped_pkg").ANSWER, pure=False,
                             workers=[w]).result(timeout=10) == 42
        where = client.submit(lambda: get_worker().local_directory, pure=False, workers=[w])
        # uploads go to the worker's own scratch directory (its local_directory)
        directory = where.result(timeout=10)
        assert os.path.basename(os.path.dirname(directory)) == "shoal-scratch-space"
        assert os.path.basename(directory).startswith("worker-")


def test_environ_and_upload_directory_reach_every_worker(fresh: tuple[LocalCluster, Client],
                                                          tmp_path: pathlib.Path) -> None:
    cluster, client = fresh
    before = client.run(os.getpid)
    client.register_plugin(Environ({"SHOAL_TEST_PLUGIN_VAR": 7}))
    # Environ.restart: the running worker was restarted and set it up before joining again
    assert set(client.run(os.getpid).values()).isdisjoint(before.values())
    package = tmp_path / "shoal_dir_upload"
    package.mkdir()
    (package / "helper_in_dir.py").write_text("NAME = 'from the directory'\n")
    (package / "tests").mkdir()
    (package / "tests" / "skipped.py").write_text("")
    client.register_plugin(UploadDirectory(str(package), update_path=True))
    cluster.scale(2)
    client.wait_for_workers(2, timeout=30)

    def look() -> tuple[str | None, str, bool]:
        import helper_in_dir

        skipped = os.path.exists(os.path.join(os.path.dirname(helper_in_dir.__file__), "tests"))
        return os.environ.get("SHOAL_TEST_PLUGIN_VAR"), helper_in_dir.NAME, skipped

    for w in client.nthreads():
        assert client.submit(look, pure=False, workers=[w]).result(timeout=10) == (
            "7", "from the directory", False)


class NannyMark(NannyPlugin):
    name = "nanny-mark"

    def setup(self, nanny):  # type: ignore[no-untyped-def]
        nanny.env["SHOAL_NANNY_MARK"] = nanny.worker_address


def _wheel(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    """A pure-Python wheel made here, so the install needs no network."""
    path = tmp_path / f"{name}-1.0-py3-none-any.whl"
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "GREETING = 'installed'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: shoal-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{dist}/RECORD", record)
    return path


@pytest.mark.timeout(120)
def test_pip_install_and_nanny_plugins(fresh: tuple[LocalCluster, Client], tmp_path: pathlib.Path) -> None:
    cluster, client = fresh
    name = f"shoal_test_wheel_{os.getpid()}"
    wheel = _wheel(tmp_path, name)
    try:
        client.register_plugin(PipInstall([str(wheel)], pip_options=["--no-deps", "--no-index"]))
        client.register_plugin(NannyMark())
        cluster.scale(2)
        client.wait_for_workers(2, timeout=30)
        for w in client.nthreads():
            got = client.submit(lambda n=name: (__import__(n).GREETING, os.environ["SHOAL_NANNY_MARK"]),
                                pure=False, workers=[w]).result(timeout=30)
            assert got == ("installed", w)
        with pytest.raises(RuntimeError, match="pip failed"):
            client.register_plugin(PipInstall([str(tmp_path / "missing.whl")], pip_options=["--no-index"]))
    finally:
        import subprocess

        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", name], check=False,
                       capture_output=True)
