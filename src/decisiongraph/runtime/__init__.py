"""Projection runtime: supervised workers that keep projections current.

A worker owns one (tenant, projection) through a lease, applies batches
from its cursor (rows and cursor in one transaction), retries a failing
event with backoff and parks it in dead letters after a bounded number of
attempts, so a projection stops rather than skipping anything.
"""

from __future__ import annotations

from decisiongraph.runtime.health import ProjectionStatus, projection_statuses
from decisiongraph.runtime.rebuild import (
    DigestComparison,
    Replay,
    compare_with_rebuild,
    rebuild_online,
    replay_digests,
    replay_log,
)
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.runtime.wait import wait_for_position
from decisiongraph.runtime.worker import ProjectionWorker

__all__ = [
    "DigestComparison",
    "ProjectionStatus",
    "ProjectionWorker",
    "Replay",
    "Supervisor",
    "SupervisorConfig",
    "compare_with_rebuild",
    "projection_statuses",
    "rebuild_online",
    "replay_digests",
    "replay_log",
    "wait_for_position",
]
