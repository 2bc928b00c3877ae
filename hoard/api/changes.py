"""Starting an operation on a cluster, and waiting briefly for short ones.

One rule for every change: the operation claims the cluster (no other may be
running on it), its status must allow the change, and the operation is
committed before its workflow starts (the operation row is the outbox).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hoard.api.auth import Principal
from hoard.api.schemas import Accepted
from hoard.api.views import cluster_view, operation_view
from hoard.domain.errors import Conflict, HoardError, NotFound, QuotaExceeded
from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.store import locks, operations
from hoard.store.models import Cluster, Operation, Project
from hoard.workflows import runtime
from hoard.workflows.services import Services


class OperationFailed(HoardError):
    """A short operation that failed for a reason the caller can act on."""

    def __init__(self, op: Operation) -> None:
        super().__init__(op.error)
        self.status = op.error_status or 500
        self.title = {404: "Not found", 409: "Conflict", 422: "Invalid input"}.get(
            self.status, "Operation failed")


def get_cluster(s: Session, principal: Principal, cluster_id: str) -> Cluster:
    cluster = s.get(Cluster, cluster_id)
    # Another project's cluster answers exactly like a missing one.
    if cluster is None or cluster.project_id != principal.project_id:
        raise NotFound(f"no cluster {cluster_id!r} in this project")
    return cluster


Guard = Callable[[Session, Cluster], None]


def _checked(s: Session, principal: Principal, cluster_id: str, op_id: str, kind: str,
             allowed: Iterable[ClusterStatus], quota: Guard | None) -> Cluster:
    """Claim the cluster for ``op_id`` and make every check a change needs, in
    ``s``'s transaction: the claim, the cluster's status, the caller's ``quota``."""
    if quota is not None:
        locks.hold_project(s, principal.project_id)
    claimed = locks.claim_cluster(s, cluster_id, op_id)
    cluster = get_cluster(s, principal, cluster_id)
    if not claimed:
        raise Conflict(f"operation {cluster.operation_id} is still running on this "
                       "cluster; try again when it ends")
    allowed = set(allowed)
    if cluster.status not in allowed:
        raise Conflict(f"the cluster is {cluster.status}; {kind} needs it "
                       f"{' or '.join(sorted(allowed))}")
    if quota is not None:
        quota(s, cluster)
    return cluster


def begin(
    svc: Services, principal: Principal, cluster_id: str, kind: str, steps: list[str],
    allowed: Iterable[ClusterStatus], new_status: ClusterStatus | None,
    params: dict[str, Any] | None = None, detail: str = "", quota: Guard | None = None,
) -> Accepted:
    """Record an operation on a cluster and start its workflow.

    The operation first claims the cluster (compare-and-set, ``hoard.store.locks``),
    and only then are the cluster's status and the caller's ``quota`` check read:
    of concurrent changes exactly one is accepted and the rest get 409, on either
    store. A check that fails rolls the claim back with everything else."""
    op_id = new_id()
    with svc.store.session() as s:
        cluster = _checked(s, principal, cluster_id, op_id, kind, allowed, quota)
        if new_status is not None:
            cluster.status = new_status
            cluster.status_reason = ""
        op = operations.new_operation(s, principal.project_id, cluster.id, kind, steps,
                                      detail=detail, params=params, op_id=op_id)
        s.flush()
        accepted = Accepted(cluster=cluster_view(cluster), operation=operation_view(op))
    runtime.start(op)
    return accepted


class _Rehearsed(Exception):
    """Ends a rehearsal's transaction: everything in it is rolled back."""


def rehearse(svc: Services, principal: Principal, cluster_id: str, kind: str,
             allowed: Iterable[ClusterStatus], quota: Guard | None = None) -> None:
    """Every check ``begin`` makes, claim included, in a transaction that is then
    rolled back: a dry run is refused exactly as the change would be, and changes
    nothing."""
    try:
        with svc.store.session() as s:
            _checked(s, principal, cluster_id, new_id(), kind, allowed, quota)
            raise _Rehearsed
    except _Rehearsed:
        pass


def wait(svc: Services, op_id: str, timeout: float) -> Operation:
    """Poll the operation until it ends or ``timeout`` passes; raise if it failed."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        with svc.store.session() as s:
            op = s.get(Operation, op_id)
            assert op is not None
        if op.status == OperationStatus.FAILED:
            raise OperationFailed(op)
        if op.status == OperationStatus.SUCCEEDED or time.monotonic() > deadline:
            return op
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def usage(s: Session, project_id: str) -> tuple[int, int, int]:
    """Clusters, nodes and GB the project uses, counting growth already accepted
    but not yet made (a resize or scale still running holds what it will take)."""
    count, nodes, storage = s.execute(
        select(
            func.count(Cluster.id),
            func.coalesce(func.sum(Cluster.node_count), 0),
            func.coalesce(func.sum(Cluster.node_count * Cluster.storage_gb), 0),
        ).where(Cluster.project_id == project_id)
    ).one()
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


def check_quota(s: Session, project: Project, clusters: int, nodes: int, storage_gb: int
                ) -> None:
    """Refuse a change that would take the project over any quota."""
    used_clusters, used_nodes, used_storage = usage(s, project.id)
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
