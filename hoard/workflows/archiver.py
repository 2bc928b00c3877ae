"""The log archiver: ships each cluster's closed change-log files (WAL segments,
binlogs) to the backup store, encrypted, so a cluster can be restored to any
time up to its last shipped file. It closes the current file every
``HOARD_ARCHIVE_ROTATE_SECONDS``, which bounds how far the window lags.

Shipping is idempotent: the object is written before its row, the row is
unique per (cluster, file), and the node's copy is removed last.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import select

from hoard.backups.pipeline import upload
from hoard.domain.status import ClusterStatus
from hoard.engines.base import Backups, LogMark, NodeContext
from hoard.ids import new_id
from hoard.store import models
from hoard.workflows.backups import log_key
from hoard.workflows.loops import Loop
from hoard.workflows.members import primary
from hoard.workflows.membership import my_clusters
from hoard.workflows.services import services

log = logging.getLogger(__name__)
_last_rotation: dict[str, float] = {}
_pending_marks: dict[str, list[LogMark]] = {}  # rotations whose file is not shipped yet


def archive_once() -> int:
    """Ship every closed log of every running cluster; return how many were shipped."""
    svc = services()
    with svc.store.session() as s:
        clusters = list(s.scalars(select(models.Cluster).where(
            models.Cluster.status.in_((ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)),
            my_clusters())))
    shipped = 0
    for cluster in clusters:
        engine = svc.engines[cluster.engine]
        if not isinstance(engine, Backups) or not engine.log_kind:
            continue
        try:
            shipped += _archive_cluster(cluster, engine)
        except Exception as exc:  # one cluster's trouble must not stop the others
            log.warning("archiving %s failed: %s", cluster.name, exc)
    return shipped


def _archive_cluster(cluster: models.Cluster, engine: Backups) -> int:
    """Close the primary's current log when due, then ship the closed files. Where a
    file's name means the same bytes on every member (WAL), the other members'
    are shipped too: an old primary back after a failover may hold files it
    closed but never shipped. A rotation's mark counts once its file is shipped."""
    svc = services()
    _, ctx, primary_node = primary(cluster)
    now = time.monotonic()
    if now - _last_rotation.get(cluster.id, 0.0) >= svc.settings.archive_rotate_seconds:
        mark = engine.rotate_log(ctx, svc.ca_file)
        _last_rotation[cluster.id] = now
        if mark is not None:
            _pending_marks.setdefault(cluster.id, []).append(mark)
    nodes = [primary_node]
    if engine.logs_shared_by_members:
        nodes += [n for n in cluster.nodes if n.id != primary_node.id and n.host]
    shipped = 0
    for node in nodes:
        try:
            shipped += _ship(cluster, engine, ctx, node)
        except Exception as exc:  # a member that is down now is tried next time
            if node is primary_node:
                raise
            log.info("archiving from node %s of %s deferred: %s", node.ordinal,
                     cluster.name, exc)
    _record_marks(cluster.id)
    return shipped


def _record_marks(cluster_id: str) -> None:
    """Move the window's end to each rotation mark whose file is in the store; keep
    the others for a later pass (the file is not shipped yet)."""
    waiting = []
    with services().store.session() as s:
        for mark in _pending_marks.pop(cluster_id, []):
            row = s.scalar(select(models.ArchivedLog).where(
                models.ArchivedLog.cluster_id == cluster_id,
                models.ArchivedLog.name == mark.name))
            at = mark.at.astimezone(dt.UTC).replace(tzinfo=None)
            if row is None:
                waiting.append(mark)
            elif row.complete_until is None or row.complete_until < at:
                row.complete_until = at
    if waiting:
        _pending_marks[cluster_id] = waiting


def _ship(cluster: models.Cluster, engine: Backups, ctx: NodeContext,
          node: models.Node) -> int:
    svc = services()
    runner = svc.provider_for(node).runner(node.id)
    shipped = 0
    for path in engine.closed_logs(runner):
        key = log_key(cluster.project_id, cluster.id, path.name)
        with svc.store.session() as s:
            known = s.scalar(select(models.ArchivedLog.id).where(
                models.ArchivedLog.cluster_id == cluster.id,
                models.ArchivedLog.name == path.name))
        if known is None:
            last = engine.last_commit(ctx, runner, path)
            result = upload(svc.backup_store, key, runner.read_stream(path),
                            svc.data_key(cluster.project_id))
            with svc.store.session() as s:
                s.add(models.ArchivedLog(
                    id=new_id(), cluster_id=cluster.id, project_id=cluster.project_id,
                    name=path.name, object_key=key, size_bytes=result["size"],
                    sha256=result["sha256"],
                    last_commit_at=last.astimezone(dt.UTC).replace(tzinfo=None)
                    if last else None))
            shipped += 1
        runner.remove_tree(path)
    return shipped


def archiver(interval: float) -> Loop:
    return Loop("archiver", interval, archive_once)
