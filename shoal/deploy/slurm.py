"""``SLURMCluster``: shoal workers in SLURM jobs (dask-jobqueue's class).

    cluster = SLURMCluster(queue="regular", account="myaccount", cores=24,
                           memory="500 GB", walltime="01:00:00")
    cluster.scale(jobs=10)          # sbatch ten jobs
    cluster.adapt(maximum_jobs=20)  # or let the work decide
    client = Client(cluster)

Each job is submitted with ``sbatch`` and cancelled with ``scancel``; its
directives come from the keywords (``#SBATCH -p queue``, ``-A account``,
``--cpus-per-task``, ``--mem``, ``-t walltime``...) and
``job_extra_directives``.  See ``jobqueue.py`` for the rest.
"""

from __future__ import annotations

import math
from typing import Any

from shoal.deploy.jobqueue import Job, JobQueueCluster, setting


def slurm_format_bytes_ceil(n: int) -> str:
    """Bytes as SLURM writes them (K, M, G are powers of 1024), rounded up."""
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= factor:
            return f"{math.ceil(n / factor)}{unit}"
    return "1K"


class SLURMJob(Job):
    """One SLURM job.  queue: partition (``-p``); account: accounting
    string (``-A``; ``project`` is its old name); walltime (``-t``);
    job_cpu, job_mem: what to book, if not cores and memory."""

    submit_command = "sbatch"
    cancel_command = "scancel"
    config_name = "slurm"

    def __init__(self, scheduler: str | None = None, name: Any = None, queue: str | None = None,
                 project: str | None = None, account: str | None = None,
                 walltime: str | None = None, job_cpu: int | None = None,
                 job_mem: str | None = None, config_name: str | None = None,
                 **base_class_kwargs: Any) -> None:
        super().__init__(scheduler=scheduler, name=name, config_name=config_name,
                         **base_class_kwargs)
        c = self.config_name
        queue = setting(c, "queue", queue)
        account = setting(c, "account", account) or project
        walltime = setting(c, "walltime", walltime)
        job_cpu = setting(c, "job-cpu", job_cpu)
        job_mem = setting(c, "job-mem", job_mem)
        lines = []
        if self.job_name is not None:
            lines.append(f"#SBATCH -J {self.job_name}")
        if self.log_directory is not None:
            stem = f"{self.log_directory}/{self.job_name or 'worker'}-%J"
            lines += [f"#SBATCH -e {stem}.err", f"#SBATCH -o {stem}.out"]
        if queue is not None:
            lines.append(f"#SBATCH -p {queue}")
        if account is not None:
            lines.append(f"#SBATCH -A {account}")
        lines += ["#SBATCH -n 1", f"#SBATCH --cpus-per-task={job_cpu or self.worker_cores}",
                  f"#SBATCH --mem={job_mem or slurm_format_bytes_ceil(self.worker_memory)}"]
        if walltime is not None:
            lines.append(f"#SBATCH -t {walltime}")
        self.job_header = self._directives(lines, "#SBATCH")


class SLURMCluster(JobQueueCluster):
    __doc__ = ("Workers in SLURM jobs (dask-jobqueue's keywords: those of ``SLURMJob``, ``Job`` "
               "and ``JobQueueCluster``).")
    job_cls = SLURMJob
