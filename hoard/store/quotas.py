"""A project's quotas: what it uses, and refusing what would take it over.
Checked by the API before a change and by the autoscaler before a growth."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hoard.domain.errors import QuotaExceeded
from hoard.domain.status import OperationStatus
from hoard.store.models import Cluster, Operation, Project


def usage(s: Session, project_id: str, excluding: str | None = None) -> tuple[int, int, int]:
    """Clusters, nodes and GB the project uses, counting growth already accepted
    but not yet made (a resize or scale still running holds what it will take).
    ``excluding``: a cluster this transaction has just added and asks about."""
    total = select(
        func.count(Cluster.id),
        func.coalesce(func.sum(Cluster.node_count), 0),
        func.coalesce(func.sum(Cluster.node_count * Cluster.storage_gb), 0),
    ).where(Cluster.project_id == project_id)
    if excluding is not None:
        total = total.where(Cluster.id != excluding)
    count, nodes, storage = s.execute(total).one()
    growing = s.execute(
        select(Operation.params, Cluster.node_count, Cluster.storage_gb)
        .join(Cluster, Cluster.id == Operation.cluster_id)
        .where(Operation.project_id == project_id, Operation.kind.in_(("update", "scale")),
               Operation.status == OperationStatus.RUNNING))
    for params, node_count, storage_gb in growing:
        more_nodes = max(0, int(params.get("nodes") or node_count) - node_count)
        more_gb = max(0, int(params.get("storage_gb") or storage_gb) - storage_gb)
        nodes += more_nodes
        storage += more_nodes * storage_gb + more_gb * (node_count + more_nodes)
    return int(count), int(nodes), int(storage)


def check_quota(s: Session, project: Project, clusters: int, nodes: int, storage_gb: int,
                excluding: str | None = None) -> None:
    """Refuse a change that would take the project over any quota."""
    used_clusters, used_nodes, used_storage = usage(s, project.id, excluding)
    if used_clusters + clusters > project.quota_clusters:
        raise QuotaExceeded(
            f"cluster quota reached: {used_clusters} of {project.quota_clusters} used")
    if used_nodes + nodes > project.quota_nodes:
        raise QuotaExceeded(
            f"node quota exceeded: {used_nodes} of {project.quota_nodes} used, {nodes} asked")
    if used_storage + storage_gb > project.quota_storage_gb:
        raise QuotaExceeded(
            f"storage quota exceeded: {used_storage} of {project.quota_storage_gb} GB used, "
            f"{storage_gb} GB asked")


def check_storage_quota(s: Session, cluster: Cluster, new_storage_gb: int) -> None:
    project = s.get(Project, cluster.project_id)
    assert project is not None
    extra = (new_storage_gb - cluster.storage_gb) * cluster.node_count
    check_quota(s, project, clusters=0, nodes=0, storage_gb=extra)
