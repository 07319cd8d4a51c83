"""``PBSCluster``: shoal workers in PBS (or Torque, OpenPBS, PBS Pro) jobs,
dask-jobqueue's class.

    cluster = PBSCluster(queue="regular", account="myaccount", cores=24,
                         memory="100GB", walltime="01:00:00")
    cluster.scale(jobs=4)           # qsub four jobs

Each job is submitted with ``qsub`` and cancelled with ``qdel``; its
directives: ``#PBS -q queue``, ``-A account``, ``-l select=1:ncpus=..:mem=..``
(or ``resource_spec``), ``-l walltime=...`` and ``job_extra_directives``.
See ``jobqueue.py`` for the rest.
"""

from __future__ import annotations

import math
import os
from typing import Any

from shoal.deploy.jobqueue import Job, JobQueueCluster, setting


def pbs_format_bytes_ceil(n: int) -> str:
    """Bytes as PBS writes them (kB, MB, GB are powers of 1024), rounded up."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if n >= 10 * factor:
            return f"{math.ceil(n / factor)}{unit}"
    return f"{n}B"


class PBSJob(Job):
    """One PBS job.  queue (``-q``); account (``-A``; default ``$PBS_ACCOUNT``;
    ``project`` is its old name); resource_spec (``-l``; default
    ``select=1:ncpus=<cores>:mem=<memory>``); walltime (``-l walltime=``)."""

    submit_command = "qsub"
    cancel_command = "qdel"
    config_name = "pbs"
    job_id_regexp = r"(?P<job_id>\d+(\.[\w.-]+)?)"

    def __init__(self, scheduler: str | None = None, name: Any = None, queue: str | None = None,
                 project: str | None = None, account: str | None = None,
                 resource_spec: str | None = None, walltime: str | None = None,
                 config_name: str | None = None, **base_class_kwargs: Any) -> None:
        super().__init__(scheduler=scheduler, name=name, config_name=config_name,
                         **base_class_kwargs)
        c = self.config_name
        queue = setting(c, "queue", queue)
        account = setting(c, "account", account) or project or os.environ.get("PBS_ACCOUNT")
        resource_spec = setting(c, "resource-spec", resource_spec)
        walltime = setting(c, "walltime", walltime)
        if resource_spec is None:
            resource_spec = (f"select=1:ncpus={self.worker_cores}"
                             f":mem={pbs_format_bytes_ceil(self.worker_memory)}")
        lines = []
        if self.job_name is not None:
            lines.append(f"#PBS -N {self.job_name}")
        if queue is not None:
            lines.append(f"#PBS -q {queue}")
        if account is not None:
            lines.append(f"#PBS -A {account}")
        lines.append(f"#PBS -l {resource_spec}")
        if walltime is not None:
            lines.append(f"#PBS -l walltime={walltime}")
        if self.log_directory is not None:
            lines += [f"#PBS -e {self.log_directory}/", f"#PBS -o {self.log_directory}/"]
        self.job_header = self._directives(lines, "#PBS")


class PBSCluster(JobQueueCluster):
    __doc__ = ("Workers in PBS jobs (dask-jobqueue's keywords: those of ``PBSJob``, ``Job`` "
               "and ``JobQueueCluster``).")
    job_cls = PBSJob
