"""The batch scripts SLURM and PBS jobs submit: directives from
dask-jobqueue's keywords, the worker command, and the token read from a
file (never written into the script or onto a command line)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from typing import Any

import pytest

from shoal.deploy.jobqueue import shell_word
from shoal.deploy.pbs import PBSJob, pbs_format_bytes_ceil
from shoal.deploy.slurm import SLURMJob, slurm_format_bytes_ceil

SCHEDULER = "tcp://10.0.0.1:8786"


def command_of(script: str) -> list[str]:
    return shlex.split(script.strip().splitlines()[-1])


def test_slurm_script_from_the_keywords() -> None:
    job = SLURMJob(SCHEDULER, name="SLURMCluster-3", cores=8, memory="16GB", processes=2,
                   queue="regular", account="proj", walltime="01:00:00",
                   job_extra_directives=["--exclusive"], job_script_prologue=["module load x"],
                   worker_extra_args=["--lifetime", "55m"], interface="ib0",
                   local_directory="$TMPDIR", log_directory=None)
    script = job.job_script()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH -J shoal-worker", "#SBATCH -p regular", "#SBATCH -A proj", "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8", "#SBATCH --mem=15G", "#SBATCH -t 01:00:00",
        "#SBATCH --exclusive"]
    assert "module load x" in lines
    assert command_of(script) == [
        sys.executable, "-m", "shoal", "worker", SCHEDULER, "--name", "SLURMCluster-3",
        "--nthreads", "4", "--memory-limit", "8000000000", "--nworkers", "2", "--nanny",
        "--death-timeout", "60", "--local-directory", "$TMPDIR", "--lifetime", "55m",
        "--interface", "ib0"]
    assert "SHOAL_TOKEN" not in script  # no token: nothing about it
    assert '--local-directory "$TMPDIR"' in script  # expanded by the job's shell


def test_shell_words_keep_spaces_and_expand_only_variables(tmp_path: Any) -> None:
    """Each argument stays one word on the job's shell; ``$VAR`` is
    expanded there, nothing else is (the job's bash really runs it)."""
    args = ["plain", "two words", "$HOME/x", "it's", '"quoted" $HOME `date`']
    script = tmp_path / "s.sh"
    script.write_text("printf '%s\\n' " + " ".join(shell_word(a) for a in args) + "\n")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={"HOME": "/h", "PATH": os.environ["PATH"]}, check=True).stdout
    assert out.splitlines() == ["plain", "two words", "/h/x", "it's", '"quoted" /h `date`']


def test_pbs_script_and_skipped_directives() -> None:
    job = PBSJob(SCHEDULER, name="PBSCluster-0", cores=4, memory="20GB", queue="q",
                 walltime="00:10:00", job_directives_skip=["walltime"], job_name="mine")
    lines = job.job_script().splitlines()
    assert [line for line in lines if line.startswith("#PBS")] == [
        "#PBS -N mine", "#PBS -q q", "#PBS -l select=1:ncpus=4:mem=19GB"]
    assert job._job_id_from_submit_output("1234.pbs-server\n") == "1234.pbs-server"


def test_the_token_is_read_from_its_file_by_the_shell() -> None:
    """The script names the 0600 file; ``read`` (a builtin) puts the token
    in the environment: no command line and no ``set -x`` line shows it."""
    job = SLURMJob(SCHEDULER, name="x", cores=1, memory="1GB", token_file="/home/me/.shoal/t.token",
                   job_script_prologue=["set -x"])
    lines = job.job_script().splitlines()
    read = lines.index(next(line for line in lines if line.startswith("read -r SHOAL_TOKEN")))
    assert lines[read].startswith("read -r SHOAL_TOKEN < /home/me/.shoal/t.token ||")
    assert lines[read + 1] == "export SHOAL_TOKEN"
    assert lines.index("set -x") < read < len(lines) - 1  # after the prologue, before the worker


def test_memory_formats() -> None:
    assert slurm_format_bytes_ceil(1) == "1K"
    assert slurm_format_bytes_ceil(12345678) == "12M"
    assert slurm_format_bytes_ceil(15_000_000_000) == "14G"
    assert pbs_format_bytes_ceil(1234) == "1234B"
    assert pbs_format_bytes_ceil(15_000_000_000) == "14GB"


@pytest.mark.parametrize("kwargs, error, message", [
    ({}, ValueError, "how many cores"),
    ({"cores": 2, "memory": "1GB", "processes": 3}, ValueError, "processes"),
    ({"cores": 2, "memory": "1GB", "processes": 2, "nanny": False}, ValueError, "nanny"),
    ({"cores": 2, "memory": "1GB", "protocol": "ucx"}, NotImplementedError, "protocol"),
    ({"cores": 2, "memory": "1GB", "bogus": 1}, TypeError, "bogus"),
])
def test_bad_job_keywords(kwargs: dict, error: type[Exception], message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(error, match=message):
        SLURMJob(SCHEDULER, name="x", **kwargs)


def test_renamed_keywords_still_work_with_dask_jobqueues_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = SLURMJob(SCHEDULER, name="x", cores=1, memory="1GB", env_extra=["echo hi"],
                       job_extra=["--exclusive"])
    assert {type(w.message) for w in caught} == {FutureWarning}
    assert "echo hi" in job.job_script() and "#SBATCH --exclusive" in job.job_script()
