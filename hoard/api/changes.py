"""Starting an operation on a cluster, and waiting briefly for short ones.

One rule for every change: the operation claims the cluster (no other may be
running on it), its status must allow the change, and the operation is
committed before its workflow starts (the operation row is the outbox).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from hoard.api.auth import Principal
from hoard.api.schemas import Accepted
from hoard.api.views import cluster_view, operation_view
from hoard.domain.errors import Conflict, HoardError, NotFound
from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.store import locks, operations
from hoard.store.models import Cluster, Operation
from hoard.store.quotas import check_quota, check_storage_quota, usage
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


__all__ = ["check_quota", "check_storage_quota", "usage"]  # here for the routes

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
