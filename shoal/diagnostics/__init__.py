"""Diagnostics: ``from shoal.diagnostics import progress`` (as
``distributed.diagnostics``), and the parts of introspection that scheduler,
worker and client processes share:

    profiling.py     sampled call trees (``client.profile``)
    task_stream.py   choosing task-stream records (``client.get_task_stream``)
    logs.py          the process's recent log lines (``get_worker_logs``...)
    versions.py      package versions (``client.get_versions``)
    benchmark.py     memory and disk bandwidth (``client.benchmark_hardware``)
    cluster_dump.py  writing ``client.dump_cluster_state()`` files
    html.py          standalone HTML: flame graph, task stream

The submodules import nothing of the client: scheduler and worker processes
use them.  ``progress`` is imported on first use.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shoal.client.progress import progress as progress

__all__ = ["progress"]


def __getattr__(name: str) -> Any:
    if name == "progress":
        return importlib.import_module("shoal.client.progress").progress
    raise AttributeError(f"module 'shoal.diagnostics' has no attribute {name!r}")
