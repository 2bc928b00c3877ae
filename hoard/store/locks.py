"""Locks that hold on both stores, built from plain UPDATEs.

``SELECT ... FOR UPDATE`` locks nothing on SQLite, and with the sqlite3
driver a SELECT does not even open the transaction, so a read-then-write
check races. An UPDATE does both jobs everywhere: on PostgreSQL it takes the
row lock (and re-checks its WHERE against the row a concurrent transaction
committed), on SQLite it takes the database's single write lock until
commit. Every check that must not race therefore starts with one of these.
A claim is bookkeeping, not a change to the cluster: ``updated_at`` stays.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from hoard.store.models import Cluster, Project


def hold_project(session: Session, project_id: str) -> None:
    """Lock the project's row until the transaction ends: quota checks made after
    this see every other change to the project's usage, and no one else's until
    commit. Always taken before a cluster's claim, never after (one lock order)."""
    session.execute(update(Project).where(Project.id == project_id)
                    .values(quota_clusters=Project.quota_clusters)
                    .execution_options(synchronize_session=False))


def claim_cluster(session: Session, cluster_id: str, operation_id: str) -> bool:
    """Make ``operation_id`` the cluster's one running operation, if it has none:
    a compare-and-set on ``clusters.operation_id``. False when another operation
    holds it (or there is no such cluster)."""
    result = session.execute(
        update(Cluster).where(Cluster.id == cluster_id, Cluster.operation_id.is_(None))
        .values(operation_id=operation_id, updated_at=Cluster.updated_at)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_cluster(session: Session, cluster_id: str, operation_id: str) -> None:
    """Free the cluster for the next operation, if ``operation_id`` still holds it."""
    session.execute(
        update(Cluster).where(Cluster.id == cluster_id, Cluster.operation_id == operation_id)
        .values(operation_id=None, updated_at=Cluster.updated_at)
        .execution_options(synchronize_session=False))
