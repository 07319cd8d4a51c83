"""Ways to run shoal clusters: the scheduler, worker and nanny servers,
scheduler files, and cluster managers that get workers from elsewhere:

* ``SpecCluster`` (``spec.py``), the base: workers from specifications;
* ``SubprocessCluster`` (``subprocess_cluster.py``), ``SSHCluster``
  (``ssh.py``);
* ``JobQueueCluster``, ``SLURMCluster``, ``PBSCluster`` (``jobqueue.py``,
  ``slurm.py``, ``pbs.py``), dask-jobqueue's;
* ``Adaptive`` (``adaptive.py``): scaling with the work, for every cluster.

The names are imported on first use: the client imports this package for
scheduler files and must not pay for the rest.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_EXPORTS = {
    "Adaptive": "shoal.deploy.adaptive",
    "AdaptiveCore": "shoal.deploy.adaptive_core",
    "ProcessInterface": "shoal.deploy.spec",
    "SpecCluster": "shoal.deploy.spec",
    "SubprocessCluster": "shoal.deploy.subprocess_cluster",
    "SSHCluster": "shoal.deploy.ssh",
    "Job": "shoal.deploy.jobqueue",
    "JobQueueCluster": "shoal.deploy.jobqueue",
    "SLURMCluster": "shoal.deploy.slurm",
    "SLURMJob": "shoal.deploy.slurm",
    "PBSCluster": "shoal.deploy.pbs",
    "PBSJob": "shoal.deploy.pbs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
