"""The pure modules stay pure: no I/O, threads, clocks or randomness inside."""

from __future__ import annotations

import ast
import pathlib

import pytest

import shoal

PURE = [
    "scheduler/state.py",
    "scheduler/transitions.py",
    "scheduler/placement.py",
    "scheduler/replicas.py",
    "scheduler/scaling.py",
    "deploy/adaptive_core.py",
    "scheduler/control_state.py",
    "scheduler/data_state.py",
    "scheduler/invariants.py",
    "scheduler/records.py",
    "scheduler/event_log.py",
    "scheduler/semaphores.py",
    "scheduler/multilocks.py",
    "scheduler/stealing.py",
    "scheduler/replica_policy.py",
    "worker/state.py",
    "worker/memory.py",
    "comm/framing.py",
    "comm/codec.py",
    "comm/handshake.py",
    "dashboard/snapshot.py",
    "dashboard/views.py",
    "diagnostics/report.py",
]
FORBIDDEN = {"asyncio", "socket", "threading", "time", "os", "random", "selectors", "subprocess"}


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports(path: str) -> None:
    source = (pathlib.Path(shoal.__file__).parent / path).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            if node.module.startswith("shoal.comm") and path.startswith(("scheduler", "worker")):
                pytest.fail(f"{path} imports the transport module {node.module}")
            if node.module.endswith("server"):
                pytest.fail(f"{path} imports a server: {node.module}")
    assert not imported & FORBIDDEN, f"{path} imports {imported & FORBIDDEN}"
