"""Tools for testing shoal and code built on it, shipped with the package.

* :mod:`shoal.testing.simulation`: a deterministic, seeded simulation of a
  whole cluster (scheduler, workers and clients as in-memory state machines).
"""

from __future__ import annotations

from shoal.testing.simulation import (
    PROFILES,
    Profile,
    Simulation,
    SimulationFailure,
    run_simulation,
)

__all__ = ["PROFILES", "Profile", "Simulation", "SimulationFailure", "run_simulation"]
