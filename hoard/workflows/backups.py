"""Backups: taking one (a durable workflow), and finding what a restore needs.

Bytes go from the engine's own tool, through encryption and a checksum, to the
backup store, streamed; nothing holds a whole backup in memory. A backup that
fails leaves no object and says why.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator

from dbos import DBOS
from sqlalchemy import select
from sqlalchemy.orm import Session

from hoard.backups.pipeline import download, upload
from hoard.domain.errors import InvalidInput
from hoard.engines.base import Backups, IncrementalBackups
from hoard.store import events, models, operations
from hoard.workflows.gate import gated
from hoard.workflows.members import primary
from hoard.workflows.services import Services, services
from hoard.workflows.steps import load_cluster, recorded, short_reason

BACKUP_STEPS = ["snapshot and upload"]
GB = 1024**3


def backup_key(project_id: str, cluster_id: str, backup_id: str) -> str:
    return f"{project_id}/{cluster_id}/backups/{backup_id}.enc"


def log_key(project_id: str, cluster_id: str, name: str) -> str:
    return f"{project_id}/{cluster_id}/logs/{name}.enc"


def bounded(chunks: Iterable[bytes], seconds: float) -> Iterator[bytes]:
    """Pass chunks through, but give up (closing the tool) after ``seconds``."""
    deadline = time.monotonic() + seconds
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the backup took longer than {seconds:.0f} s and was abandoned "
                               "(HOARD_BACKUP_TIMEOUT)")
        yield chunk


def run_backup(svc: Services, cluster: models.Cluster, backup_id: str) -> None:
    """Stream a full backup of the cluster's primary into the store; record it."""
    engine, ctx, node = primary(cluster)
    if not isinstance(engine, Backups):
        raise InvalidInput(f"{engine.display_name} clusters cannot be backed up")
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
        assert backup is not None
        key, project_id = backup.object_key, backup.project_id
        parent = s.get(models.Backup, backup.parent_id) if backup.parent_id else None
    runner = svc.provider_for(node).runner(node.id)
    meta: dict[str, str] = {}
    if parent is not None:
        if not isinstance(engine, IncrementalBackups):
            raise InvalidInput(f"{engine.display_name} has no incremental backups")
        stream = engine.backup_incremental(ctx, svc.ca_file, runner, meta, parent.meta)
    else:
        stream = engine.backup(ctx, svc.ca_file, runner, meta)
    result = upload(svc.backup_store, key, bounded(stream, svc.settings.backup_timeout),
                    svc.data_key(project_id), size_hint=cluster.storage_gb * GB)
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
        assert backup is not None
        backup.status, backup.size_bytes, backup.sha256 = "available", result["size"], result[
            "sha256"]
        backup.meta, backup.finished_at = meta, models.utcnow()
        if cluster.id:
            events.record(s, cluster.id, "backup.taken",
                          f"backup {backup_id} taken ({result['size']} bytes)")


def mark_failed(svc: Services, backup_id: str, reason: str) -> None:
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
        if backup is None:
            return
        svc.backup_store.delete(backup.object_key)
        backup.status, backup.error = "failed", reason


@DBOS.step()
def take_backup(op_id: str, cluster_id: str, backup_id: str) -> None:
    with recorded(op_id, "snapshot and upload"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        run_backup(services(), cluster, backup_id)
    with services().store.session() as s:
        operations.finish(s, op_id)


@DBOS.step()
def backup_failed(op_id: str, backup_id: str, reason: str) -> None:
    svc = services()
    mark_failed(svc, backup_id, reason)
    with svc.store.session() as s:
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
@gated
def backup_cluster(op_id: str, cluster_id: str, backup_id: str) -> None:
    try:
        take_backup(op_id, cluster_id, backup_id)
    except Exception as exc:
        backup_failed(op_id, backup_id, short_reason(exc))


# --- what a restore reads --------------------------------------------------------


def chain_of(s: Session, backup_id: str) -> list[models.Backup]:
    """The backups a restore of ``backup_id`` reads: its full one first, then each
    incremental up to it."""
    chain: list[models.Backup] = []
    current = s.get(models.Backup, backup_id)
    while current is not None:
        chain.insert(0, current)
        current = s.get(models.Backup, current.parent_id) if current.parent_id else None
    if not chain or chain[0].kind != "full":
        raise InvalidInput(f"backup {backup_id} has lost the full backup it builds on")
    return chain


Chain = list[tuple[Iterable[bytes], dict[str, str]]]


def restore_inputs(
    svc: Services, backup_id: str, target: str | None
) -> tuple[Chain, list[tuple[str, Iterable[bytes]]]]:
    """The plaintext streams and metas of the backup's chain (full first), and the
    logs to replay after it up to ``target``. Without a target there are none: a
    restore of a backup brings back that backup, not what was written after it
    (each backup holds the log it needs to be consistent on its own)."""
    with svc.store.session() as s:
        chain = chain_of(s, backup_id)
        logs = [] if target is None else list(s.scalars(
            select(models.ArchivedLog)
            .where(models.ArchivedLog.cluster_id == chain[0].cluster_id,
                   models.ArchivedLog.archived_at >= chain[0].created_at)
            .order_by(models.ArchivedLog.name)))
    key = svc.data_key(chain[0].project_id)
    if target is not None:
        limit = dt.datetime.fromisoformat(target).astimezone(dt.UTC).replace(tzinfo=None)
        needed = []
        for log in logs:
            needed.append(log)
            if log.last_commit_at is not None and log.last_commit_at > limit:
                break  # the first file that goes past the target: recovery stops in it
        logs = needed
    streams: list[tuple[str, Iterable[bytes]]] = [
        (log.name, download(svc.backup_store, log.object_key, key, log.sha256)) for log in logs
    ]
    backups: Chain = [(download(svc.backup_store, b.object_key, key, b.sha256), dict(b.meta))
                      for b in chain]
    return backups, streams


def window(svc: Services, cluster_id: str) -> tuple[dt.datetime, dt.datetime] | None:
    """(earliest, latest) restorable time of a cluster, or None without backups.
    The latest is the newest rotation mark among the shipped logs: every commit up
    to it is in the store. When the logs were shipped is no measure (a file
    closed long ago may be shipped late, and one shipped now may end before)."""
    from sqlalchemy import func

    with svc.store.session() as s:
        earliest = s.scalar(select(func.min(models.Backup.finished_at)).where(
            models.Backup.cluster_id == cluster_id, models.Backup.status == "available"))
        if earliest is None:
            return None
        latest = s.scalar(select(func.max(models.ArchivedLog.complete_until)).where(
            models.ArchivedLog.cluster_id == cluster_id))
    return earliest, max(latest or earliest, earliest)


def backup_for(svc: Services, cluster_id: str, target: dt.datetime) -> str | None:
    """The newest available backup that finished before ``target``."""
    with svc.store.session() as s:
        return s.scalar(select(models.Backup.id).where(
            models.Backup.cluster_id == cluster_id, models.Backup.status == "available",
            models.Backup.finished_at <= target).order_by(models.Backup.finished_at.desc())
            .limit(1))
