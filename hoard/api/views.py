"""Turning store rows into API views."""

from __future__ import annotations

import datetime as dt
from typing import overload

from hoard.api.schemas import (
    ClusterView,
    Endpoint,
    MaintenanceWindow,
    NodeView,
    OperationView,
    Pooler,
    RunningOperation,
    StorageAutoscale,
    StorageView,
)
from hoard.domain.pooler import POOLER_PORT
from hoard.store.models import Cluster, Operation


def cluster_view(cluster: Cluster) -> ClusterView:
    members = [
        NodeView(
            id=n.id, ordinal=n.ordinal, role=n.role, status=n.status,
            status_reason=n.status_reason, provider=n.provider, host=n.host, port=n.port,
            zone=n.zone, lag_bytes=n.lag_bytes, limits=dict(n.limits or {}),
            storage=None if n.storage_total_bytes is None else StorageView(
                used_bytes=n.storage_used_bytes or 0, total_bytes=n.storage_total_bytes),
            observed_at=utc(n.observed_at),
        )
        for n in cluster.nodes
    ]
    return ClusterView(
        id=cluster.id, name=cluster.name, engine=cluster.engine, version=cluster.version,
        size=cluster.size, provider=cluster.provider, nodes=cluster.node_count,
        durability=cluster.durability,
        storage_gb=cluster.storage_gb, status=cluster.status,
        status_reason=cluster.status_reason, configuration_id=cluster.configuration_id,
        pending_restart=list(cluster.pending_restart or []), labels=dict(cluster.labels or {}),
        deletion_protection=bool(cluster.deletion_protection),
        maintenance_window=(MaintenanceWindow.model_validate(cluster.maintenance_window)
                            if cluster.maintenance_window else None),
        pooler=Pooler.model_validate(cluster.pooler) if cluster.pooler else None,
        storage_autoscale=(StorageAutoscale.model_validate(cluster.storage_autoscale)
                           if cluster.storage_autoscale else None),
        last_verified_restorable_at=utc(cluster.last_verified_restorable_at),
        last_verified_restorable_seconds=cluster.last_verified_restorable_seconds,
        operation=running(cluster),
        endpoints=endpoints(cluster),
        members=members, created_at=utc(cluster.created_at),
        updated_at=utc(cluster.updated_at),
    )


def running(cluster: Cluster) -> RunningOperation | None:
    """The operation that holds the cluster's claim, if any."""
    op = cluster.running_operation if cluster.operation_id else None
    return RunningOperation(id=op.id, kind=op.kind) if op is not None else None


def endpoints(cluster: Cluster) -> list[Endpoint]:
    """A replicated cluster's stable addresses, or a standalone node's own address;
    then the pooler's, once it runs."""
    if cluster.endpoint_host and cluster.rw_port and cluster.ro_port:
        found = [Endpoint(role="read-write", host=cluster.endpoint_host, port=cluster.rw_port),
                 Endpoint(role="read-only", host=cluster.ro_host or cluster.endpoint_host,
                          port=cluster.ro_port)]
    else:
        found = [Endpoint(role="read-write", host=n.host, port=n.port)
                 for n in cluster.nodes if n.role == "primary" and n.host and n.port]
    if cluster.pooler_host:
        found.append(Endpoint(role="pooler", host=cluster.pooler_host, port=POOLER_PORT))
    return found


@overload
def utc(value: dt.datetime) -> dt.datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: dt.datetime | None) -> dt.datetime | None:
    """The store keeps naive UTC; the API says so explicitly."""
    return value.replace(tzinfo=dt.UTC) if value is not None else None


def operation_view(op: Operation) -> OperationView:
    return OperationView(
        id=op.id, kind=op.kind, cluster_id=op.cluster_id, status=op.status,
        progress=op.progress, steps=list(op.steps), error=op.error,
        error_status=op.error_status,
        created_at=utc(op.created_at), finished_at=utc(op.finished_at),
    )
