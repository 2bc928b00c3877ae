"""Maintenance windows: settings that wait for a restart (``pending_restart``)
are applied by Hoard itself while the cluster's window is open.

Every ``HOARD_MAINTENANCE_INTERVAL`` each worker looks at its share of the
clusters (the shards it owns) that have a window and settings waiting and are
ACTIVE (a DEGRADED one is left to the observer: a restart would not help it,
and its settings wait for the next look). For each that is due now
(``hoard.domain.maintenance.restart_due``: its window is open, and no restart
of this opening failed) it starts an ordinary restart operation (the one
``POST /actions/restart`` starts), claimed as every change is, and says so in
an event. All clusters of a pass are judged before any restart starts.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from hoard.domain import maintenance
from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.store import events, locks, models, operations
from hoard.workflows import runtime
from hoard.workflows.loops import Loop
from hoard.workflows.membership import my_clusters
from hoard.workflows.services import services

log = logging.getLogger(__name__)
DETAIL = "maintenance window"


def due(now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """This worker's clusters whose settings are to be applied at ``now`` (naive
    UTC): (cluster id, when the window opened). See ``maintenance.restart_due``."""
    with services().store.session() as s:
        rows = list(s.execute(select(models.Cluster.id, models.Cluster.maintenance_window,
                                     models.Cluster.pending_restart).where(
            models.Cluster.maintenance_window.isnot(None),
            models.Cluster.status == ClusterStatus.ACTIVE,
            models.Cluster.operation_id.is_(None), my_clusters()).order_by(models.Cluster.id)))
    found = []
    for cluster_id, window, pending in rows:
        opened = maintenance.opened_at(window, now)
        if not pending or opened is None:
            continue  # most clusters: no query beyond the one above
        failed = _failed_restarts(cluster_id, opened)
        if maintenance.restart_due(window, pending, now, failed) is not None:
            found.append((cluster_id, opened))
    return found


def _failed_restarts(cluster_id: str, since: dt.datetime) -> list[dt.datetime]:
    """When the restarts a maintenance window started on the cluster since ``since``
    and that failed (and were rolled back) began."""
    with services().store.session() as s:
        rows = s.execute(select(models.Operation.created_at, models.Operation.params).where(
            models.Operation.cluster_id == cluster_id, models.Operation.kind == "restart",
            models.Operation.status == OperationStatus.FAILED,
            models.Operation.created_at >= since))
        return [created for created, params in rows if "window" in (params or {})]


def apply_pending(cluster_id: str, opened: dt.datetime) -> bool:
    """Start the restart that applies the cluster's pending settings, unless another
    operation holds the cluster or it changed since it was judged."""
    op_id = new_id()
    with services().store.session() as s:
        if not locks.claim_cluster(s, cluster_id, op_id):
            return False  # another operation runs: the next pass looks again
        cluster = s.get(models.Cluster, cluster_id)
        if (cluster is None or not cluster.pending_restart
                or cluster.status != ClusterStatus.ACTIVE):
            locks.release_cluster(s, cluster_id, op_id)
            return False
        window = dict(cluster.maintenance_window or {})
        cluster.status, cluster.status_reason = ClusterStatus.UPDATING, ""
        op = operations.new_operation(s, cluster.project_id, cluster_id, "restart",
                                      ["restart"], detail=DETAIL,
                                      params={"window": opened.isoformat()}, op_id=op_id)
        events.record(s, cluster_id, "cluster.maintenance",
                      f"maintenance window ({maintenance.describe(window)}): restarting to "
                      f"apply {', '.join(cluster.pending_restart)}", op_id)
        s.flush()
    runtime.start(op)
    return True


def maintain_once(now: dt.datetime) -> int:
    """One pass: judge every cluster, then start the restarts; return how many.
    One cluster's failure is logged and never stops the others'."""
    started = 0
    for cluster_id, opened in due(now):
        try:
            started += apply_pending(cluster_id, opened)
        except Exception:
            log.exception("maintenance restart of cluster %s not started; the next pass "
                          "tries again", cluster_id)
    return started


def maintainer(interval: float) -> Loop:
    return Loop("maintenance", interval, lambda: maintain_once(models.utcnow()))
