"""Statuses with fixed names that never change meaning."""

from __future__ import annotations

from enum import StrEnum


class ClusterStatus(StrEnum):
    BUILDING = "BUILDING"  # a create workflow is running
    ACTIVE = "ACTIVE"  # every node healthy
    DEGRADED = "DEGRADED"  # serving, or recovering, with some node unhealthy
    FAILED = "FAILED"  # the create failed; nothing was left behind
    DELETING = "DELETING"  # a delete workflow is running
    STOPPED = "STOPPED"  # stopped on request; data kept, nothing serving
    UPDATING = "UPDATING"  # a resize, reconfiguration or restart is running


class NodeStatus(StrEnum):
    PENDING = "PENDING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    STOPPED = "STOPPED"


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
