"""Storage autoscaling: each worker, every ``HOARD_AUTOSCALE_INTERVAL``, looks
at its share of the clusters (the shards it owns) that have a
``storage_autoscale`` policy, are ACTIVE or DEGRADED (a full disk makes a
cluster DEGRADED: that is when growth matters most) and have no operation
running. The observer's recorded storage use picks the candidates without
touching a node; each candidate's use is then measured afresh (the record may
predate a growth that just finished), so a growth is never started twice for
one filling.

A growth is the ordinary storage update (``PATCH {"storage_gb"}``'s operation),
claimed as every change is, with a ``storage.autoscaled`` event; at
``max_gb``, or where the project's quota leaves no room, a
``storage.autoscale_limit`` event says so once for that size.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from hoard.domain.autoscale import Decision, Policy, decide
from hoard.domain.errors import QuotaExceeded
from hoard.domain.status import ClusterStatus
from hoard.domain.storage import StorageUsage
from hoard.ids import new_id
from hoard.store import events, locks, models, operations, quotas
from hoard.workflows import runtime
from hoard.workflows.cluster_update import UPDATE_STEPS
from hoard.workflows.loops import Loop
from hoard.workflows.membership import my_clusters
from hoard.workflows.services import services

log = logging.getLogger(__name__)
WATCHED = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)


def _recorded(node: models.Node) -> StorageUsage | None:
    if node.storage_used_bytes is None or not node.storage_total_bytes:
        return None
    return StorageUsage(node.storage_used_bytes, node.storage_total_bytes)


def candidates() -> list[str]:
    """This worker's clusters whose recorded storage use passes their threshold."""
    with services().store.session() as s:
        clusters = s.scalars(select(models.Cluster).options(
            selectinload(models.Cluster.nodes)).where(
            models.Cluster.storage_autoscale.isnot(None),
            models.Cluster.status.in_(WATCHED),
            models.Cluster.operation_id.is_(None), my_clusters()).order_by(models.Cluster.id))
        return [c.id for c in clusters if c.storage_autoscale and decide(
            c.storage_gb, Policy.of(c.storage_autoscale),
            [(n.ordinal, _recorded(n)) for n in c.nodes]) is not None]


def _measured(cluster: models.Cluster) -> Decision | None:
    """The decision on the nodes' storage use as measured now."""
    svc = services()
    assert cluster.storage_autoscale is not None
    usages = [(n.ordinal, svc.provider_for(n).storage_usage(n.id, cluster.storage_gb))
              for n in cluster.nodes]
    return decide(cluster.storage_gb, Policy.of(cluster.storage_autoscale), usages)


def _limit(cluster_id: str, storage_gb: int, reason: str) -> None:
    """Say once per size that the cluster cannot grow by itself."""
    with services().store.session() as s:
        row = s.get(models.Cluster, cluster_id)
        if row is None or row.autoscale_limit_gb == storage_gb:
            return
        row.autoscale_limit_gb = storage_gb
        events.record(s, cluster_id, "storage.autoscale_limit", reason)


def autoscale(cluster_id: str) -> bool:
    """Start the cluster's storage growth if it is (still) due; True if started."""
    svc = services()
    with svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id, options=[selectinload(
            models.Cluster.nodes)])
    if cluster is None or not cluster.storage_autoscale:
        return False
    decision = _measured(cluster)  # outside a transaction: a provider may be slow
    seen = (cluster.storage_gb, dict(cluster.storage_autoscale))
    if decision is None:
        return False
    if decision.grow_to is None:
        _limit(cluster_id, seen[0], decision.reason)
        return False
    op_id = new_id()
    try:
        with svc.store.session() as s:
            if not locks.claim_cluster(s, cluster_id, op_id):
                return False  # another operation runs: the next pass looks again
            row = s.get(models.Cluster, cluster_id)
            if (row is None or row.status not in WATCHED
                    or (row.storage_gb, row.storage_autoscale) != seen):
                locks.release_cluster(s, cluster_id, op_id)
                return False
            quotas.check_storage_quota(s, row, decision.grow_to)
            row.status, row.status_reason = ClusterStatus.UPDATING, ""
            op = operations.new_operation(
                s, row.project_id, cluster_id, "update", UPDATE_STEPS,
                detail=f"storage_gb={decision.grow_to} (autoscaling)",
                params={"storage_gb": decision.grow_to, "autoscale": True}, op_id=op_id)
            events.record(s, cluster_id, "storage.autoscaled", decision.reason, op_id)
            s.flush()
    except QuotaExceeded as exc:  # the claim was rolled back with the rest
        _limit(cluster_id, seen[0], f"{decision.reason} — not started: {exc}")
        return False
    runtime.start(op)
    return True


def autoscale_once() -> int:
    """One pass: the candidates, then a growth for each still due; how many began.
    One cluster's failure is logged and never stops the others'."""
    started = 0
    for cluster_id in candidates():
        try:
            started += autoscale(cluster_id)
        except Exception:
            log.exception("storage autoscaling of cluster %s not started; the next pass "
                          "tries again", cluster_id)
    return started


def autoscaler(interval: float) -> Loop:
    return Loop("autoscale", interval, autoscale_once)
