"""SLURMCluster and PBSCluster against a stand-in batch system on this
machine (``fake_batch.py`` as ``sbatch``, ``qsub``, ``scancel``, ``qdel``
on PATH): the job scripts really run, in the background, and start real
workers that join the cluster's scheduler.

What must hold: ``scale(jobs=2)`` brings two workers that compute;
``close()`` cancels every job it submitted and leaves no process behind;
the token reaches the jobs' workers through a 0600 file and their
environment, never a command line; adaptive scaling submits jobs under a
backlog and cancels them when idle, down to the minimum."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoal import Client, Scheduler, Security, config
from shoal.deploy import JobQueueCluster, PBSCluster, SLURMCluster
from tests.conftest import poll_until
from tests.integration.fake_batch import live_processes

pytestmark = pytest.mark.timeout(120)
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_batch.py")
LOCAL = {"host": "127.0.0.1"}  # the jobs run on this machine: the scheduler stays on loopback


class Batch:
    """The stand-in batch system's state directory."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self._sessions: dict[str, int] = {}  # job -> its session, remembered after scancel

    def ids(self, what: str) -> list[str]:
        """The jobs "submitted" or "cancelled", in order."""
        try:
            with open(os.path.join(self.dir, what)) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def _session(self, job: str) -> int:
        path = os.path.join(self.dir, f"{job}.pid")
        if os.path.exists(path):
            with open(path) as f:
                self._sessions[job] = int(f.read())
        return self._sessions[job]

    def running(self) -> list[int]:
        """Live processes of every job ever submitted."""
        return [pid for job in self.ids("submitted") for pid in live_processes(self._session(job))]


@pytest.fixture
def batch(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Batch]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for command in ("sbatch", "qsub", "scancel", "qdel", "squeue", "qstat"):
        path = bin_dir / command
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} {command} \"$@\"\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_BATCH_DIR", str(state))
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    b = Batch(str(state))
    yield b
    for pid in b.running():  # whatever a failed test left
        os.kill(pid, signal.SIGKILL)


def _names(client: Client) -> list[str]:
    return sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())


def test_slurm_scale_jobs_compute_and_close_cancels_every_job(batch: Batch, tmp_path: Any) -> None:
    """Two SLURM jobs of one worker each: both join and compute; a client
    started from the cluster's scheduler file finds them; close() cancels
    both jobs and no process of theirs is left."""
    path = str(tmp_path / "scheduler.json")
    cluster = SLURMCluster(cores=1, memory="1GB", processes=1, walltime="00:05:00",
                           scheduler_options={**LOCAL, "scheduler_file": path})
    try:
        assert "#SBATCH -t 00:05:00" in cluster.job_script()
        cluster.scale(jobs=2)
        assert batch.ids("submitted") == ["1", "2"]
        assert {w.job_id for w in cluster.workers.values()} == {"1", "2"}
        with Client(scheduler_file=path) as client:
            client.wait_for_workers(2, timeout=60)
            assert _names(client) == ["SLURMCluster-0", "SLURMCluster-1"]
            addresses = sorted(client.scheduler_info()["workers"])
            results = [client.submit(os.getpid, workers=[a], pure=False).result() for a in addresses]
            assert len(set(results)) == 2 and os.getpid() not in results
    finally:
        cluster.close()
    assert sorted(batch.ids("cancelled")) == ["1", "2"]
    assert poll_until(lambda: not batch.running(), timeout=30), batch.running()


def test_pbs_job_of_two_workers_gets_the_token_from_a_0600_file(batch: Batch) -> None:
    """A PBS job running two workers (processes=2), with the cluster's token
    set in this process's settings.  PBS starts jobs with a clean
    environment, so the token can only come from the file the cluster
    wrote: 0600, named in the script, read into SHOAL_TOKEN; no command
    line on the machine shows it.  Closing removes the file."""
    token = "tok-" + "x7" * 20
    with config.set({"security.token": token}):
        cluster = PBSCluster(cores=2, memory="2GB", processes=2, scheduler_options=LOCAL)
    try:
        token_file = cluster._token_file
        assert token_file is not None
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        script = cluster.job_script()
        assert token not in script and token_file in script
        cluster.scale(jobs=1)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            assert _names(client) == ["PBSCluster-0-0", "PBSCluster-0-1"]
            assert cluster.plan == cluster.requested == cluster.observed
            pids = [w["pid"] for w in client.scheduler_info()["workers"].values()]
        for pid in pids:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            assert environ[b"SHOAL_TOKEN"] == token.encode()
            assert b"PYTEST_CURRENT_TEST" not in environ  # a clean PBS environment indeed
        for pid in batch.running():
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert token.encode() not in f.read()
    finally:
        cluster.close()
    assert not os.path.exists(token_file)
    assert batch.ids("cancelled") == ["1"]
    assert poll_until(lambda: not batch.running(), timeout=30)


class SchedulerWithItsOwnToken(Scheduler):
    """A scheduler that made its own token, as one listening beyond
    loopback does with no token configured (``security.token`` of issue 10)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.security = Security(token="made-by-the-scheduler-" + "9" * 20)


def test_a_token_the_scheduler_made_goes_to_the_jobs(batch: Batch) -> None:
    with SLURMCluster(cores=1, memory="1GB", scheduler_options=LOCAL,
                      scheduler_cls=SchedulerWithItsOwnToken) as cluster:
        path = cluster._token_file
        assert path is not None and f"SHOAL_TOKEN < {path}" in cluster.job_script()
        with open(path) as f:
            assert f.read().strip() == cluster.scheduler.security.token
    assert not os.path.exists(path)


def test_slurm_adapts_up_under_a_backlog_and_down_to_the_minimum(batch: Batch) -> None:
    """Adaptive between one and two jobs: a backlog of short tasks submits
    a second job; once idle, one job is cancelled (its worker retired
    first) and one stays; closing cancels the last."""
    cluster = SLURMCluster(cores=1, memory="1GB", processes=1, scheduler_options=LOCAL)
    try:
        adaptive = cluster.adapt(minimum_jobs=1, maximum_jobs=2, interval="200ms", wait_count=2,
                                 target_duration="1s")
        assert (adaptive.minimum, adaptive.maximum) == (1, 2)
        with Client(cluster) as client:
            assert poll_until(lambda: len(batch.ids("submitted")) >= 1, timeout=30)
            futures = client.map(lambda x: time.sleep(0.05) or x, range(100))
            assert poll_until(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60)
            assert sorted(batch.ids("submitted")) == ["1", "2"]
            assert client.gather(futures) == list(range(100))
            assert poll_until(lambda: len(batch.ids("cancelled")) == 1, timeout=60)
            assert poll_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=30)
            assert client.gather(futures) == list(range(100))  # the retired worker's results moved
            assert poll_until(lambda: len(cluster.workers) == 1, timeout=30)
    finally:
        cluster.close()
    assert sorted(batch.ids("cancelled")) == ["1", "2"]
    assert poll_until(lambda: not batch.running(), timeout=30)


def test_a_program_that_forgets_close_still_cancels_its_jobs_at_exit(batch: Batch) -> None:
    """A script submits a job and exits without closing its cluster: the
    job must not outlive it (dask's ``shutdown_on_close``)."""
    code = ("from shoal.deploy import SLURMCluster\n"
            "c = SLURMCluster(cores=1, memory='1GB', processes=1, "
            "scheduler_options={'host': '127.0.0.1'})\n"
            "c.scale(jobs=1)\n"
            "print(c.workers['SLURMCluster-0'].job_id)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["1"]
    assert batch.ids("submitted") == batch.ids("cancelled") == ["1"]
    assert poll_until(lambda: not batch.running(), timeout=30)


def test_cluster_keywords_are_checked_before_anything_starts(batch: Batch) -> None:
    with pytest.raises(ValueError, match="how many cores"):
        SLURMCluster()
    with pytest.raises(ValueError, match="scheduler_options"):
        SLURMCluster(cores=1, memory="1GB", host="0.0.0.0")
    with pytest.raises(TypeError, match="bogus"):
        PBSCluster(cores=1, memory="1GB", bogus=3)
    with pytest.raises(ValueError, match="Job class"):
        JobQueueCluster(cores=1, memory="1GB")
    assert batch.ids("submitted") == []
