"""Backup schedules and retention, looked at every ``HOARD_SCHEDULE_INTERVAL``.

A due schedule starts an ordinary backup operation; a due ``verify`` schedule
a verification of the cluster's newest available backup
(``hoard.workflows.verification``). Retention keeps, per
cluster (live or deleted), the newest ``keep_last`` backups and those younger
than ``keep_days`` — both limits apply — and drops archived logs older than
the oldest backup kept, since nothing can replay them any more. The store
sweeper removes uploads a crashed writer left (``hoard.backups.sweeper``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from croniter import CroniterError, croniter
from sqlalchemy import func, select

from hoard.backups.sweeper import Sweeper
from hoard.domain.status import ClusterStatus
from hoard.ids import new_id
from hoard.store import locks, models, operations
from hoard.workflows import backups, runtime, verification
from hoard.workflows.loops import Loop
from hoard.workflows.membership import my_clusters, owns_shard
from hoard.workflows.services import services

log = logging.getLogger(__name__)


def new_backup(cluster: models.Cluster, reason: str, parent_id: str | None = None
               ) -> models.Backup:
    """A backup row for ``cluster`` (status creating), carrying what a restore needs;
    with ``parent_id``, an incremental one on top of that backup."""
    schedule = cluster.backup_schedule or {}
    backup_id = new_id()
    return models.Backup(
        id=backup_id, project_id=cluster.project_id, cluster_id=cluster.id,
        cluster_name=cluster.name, engine=cluster.engine, version=cluster.version,
        storage_gb=cluster.storage_gb, kind="incremental" if parent_id else "full",
        parent_id=parent_id, reason=reason, status="creating",
        object_key=backups.backup_key(cluster.project_id, cluster.id, backup_id),
        admin_user=cluster.admin_user, admin_password=cluster.admin_password,
        service_password=cluster.service_password, meta={},
        keep_last=schedule.get("keep_last"), keep_days=schedule.get("keep_days"),
    )


def is_due(cron: str, since: dt.datetime, now: dt.datetime) -> bool:
    """Whether the schedule fired between ``since`` (the last scheduled backup, or
    when the schedule was set) and ``now``. A missed run fires once, not once
    per missed slot."""
    return bool(croniter(cron, since).get_next(dt.datetime) <= now)


# A whole leap cycle: what cron (which has no year field) does in these years it
# does in every year.
CHECKED_YEARS = 5


def cron_problem(cron: str, today: dt.date) -> str | None:
    """Why ``cron`` is no backup schedule, or None if it is one: five fields, and a
    backup in every calendar year. Cron has no year field, so a schedule that fires
    in one common year fires in all of them; what fires in some years only is a
    date that exists only in leap years (29 February), and a date that never
    exists (31 February) never fires. Either looks configured while years go by
    without a backup. Checked from 1 January of this year and the next four."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        return f"cron {cron!r} is not a 5-field cron expression"
    for year in range(today.year, today.year + CHECKED_YEARS):
        new_year = dt.datetime(year, 1, 1)
        try:
            fires = croniter(cron, new_year - dt.timedelta(minutes=1)).get_next(dt.datetime)
        except (CroniterError, ValueError):  # croniter gives up: no such date, ever
            return f"cron {cron!r} never fires (it names a date that does not exist)"
        if fires.year != year:
            return (f"cron {cron!r} does not fire in {year} (next: {fires:%Y-%m-%d}); a "
                    "backup schedule must fire at least once every year")
    return None


# The named verification schedules (UTC): after the small hours' backups.
VERIFY_EVERY = {"daily": "0 5 * * *", "weekly": "0 5 * * 0"}


def verify_cron(value: str) -> str:
    """A verification schedule as cron: ``daily``, ``weekly``, or a cron itself."""
    return VERIFY_EVERY.get(value, value)


def verify_problem(value: str, today: dt.date) -> str | None:
    """Why ``value`` is no verification schedule, or None if it is one."""
    if value in VERIFY_EVERY:
        return None
    problem = cron_problem(value, today)
    if problem is None:
        return None
    return (f"verify must be 'daily', 'weekly' or a 5-field cron expression (UTC); "
            f"{problem}")


def scheduled_clusters() -> list[models.Cluster]:
    """This worker's running clusters with a schedule: read once a pass, for both
    their backups and their verifications."""
    with services().store.session() as s:
        return list(s.scalars(select(models.Cluster).where(
            models.Cluster.backup_schedule.isnot(None),
            models.Cluster.status.in_((ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)),
            my_clusters()).order_by(models.Cluster.id)))


def due_backups(now: dt.datetime, clusters: list[models.Cluster]) -> int:
    """Start a backup for every cluster whose schedule has come round. One
    cluster's failure is logged and skipped: it never stops the others'."""
    started = 0
    for cluster in clusters:
        try:
            started += _start_if_due(cluster, now)
        except Exception:
            log.exception("scheduled backup of cluster %s (%s) not started; the next "
                          "pass tries again", cluster.id, cluster.name)
    return started


def _start_if_due(cluster: models.Cluster, now: dt.datetime) -> int:
    svc = services()
    schedule = cluster.backup_schedule or {}
    with svc.store.session() as s:
        last = s.scalar(select(func.max(models.Backup.created_at)).where(
            models.Backup.cluster_id == cluster.id, models.Backup.reason == "scheduled"))
        if not is_due(schedule["cron"], last or cluster.updated_at, now):
            return 0
        op_id = new_id()
        if not locks.claim_cluster(s, cluster.id, op_id):
            return 0  # another operation runs: the next pass
        backup = new_backup(cluster, "scheduled")
        s.add(backup)
        op = operations.new_operation(s, cluster.project_id, cluster.id, "backup",
                                      backups.BACKUP_STEPS, detail="scheduled",
                                      params={"backup_id": backup.id}, op_id=op_id)
        s.flush()
    runtime.start(op)
    return 1


def apply_retention(now: dt.datetime) -> int:
    """Delete backups past their retention; return how many went."""
    svc = services()
    with svc.store.session() as s:
        rows = list(s.scalars(select(models.Backup).where(models.Backup.status == "available")
                              .order_by(models.Backup.created_at.desc())))
        schedules: dict[str, dict[str, int] | None] = {
            cid: sched for cid, sched in s.execute(
                select(models.Cluster.id, models.Cluster.backup_schedule))}
    by_cluster: dict[str, list[models.Backup]] = defaultdict(list)
    for row in rows:
        if owns_shard(models.shard_of(row.cluster_id)):  # this worker's share
            by_cluster[row.cluster_id].append(row)
    removed = 0
    for cluster_id, kept in by_cluster.items():
        try:
            removed += _retain(cluster_id, kept, schedules.get(cluster_id) or {}, now)
        except Exception:
            log.exception("retention of cluster %s's backups failed; the next pass tries "
                          "again", cluster_id)
    return removed


def _retain(cluster_id: str, kept: list[models.Backup], policy: dict[str, int],
            now: dt.datetime) -> int:
    """Apply one cluster's retention to its backups (newest first)."""
    keep_last = policy.get("keep_last", kept[0].keep_last)
    keep_days = policy.get("keep_days", kept[0].keep_days)
    doomed = [b for i, b in enumerate(kept)
              if (keep_last is not None and i >= keep_last)
              or (keep_days is not None and i > 0
                  and b.created_at < now - dt.timedelta(days=keep_days))]
    # A backup some kept incremental builds on must stay, or that one is useless.
    needed = _ancestors([b for b in kept if b not in doomed], kept)
    doomed = [b for b in doomed if b.id not in needed]
    for backup in doomed:
        delete_backup(backup.id)
    survivors = [b for b in kept if b not in doomed]
    if survivors:
        prune_logs(cluster_id, survivors[-1].created_at)
    return len(doomed)


def _ancestors(survivors: list[models.Backup], rows: list[models.Backup]) -> set[str]:
    by_id = {b.id: b for b in rows}
    needed: set[str] = set()
    for backup in survivors:
        parent = backup.parent_id
        while parent and parent not in needed:
            needed.add(parent)
            parent = by_id[parent].parent_id if parent in by_id else None
    return needed


def delete_backup(backup_id: str) -> None:
    svc = services()
    with svc.store.session() as s:
        backup = s.get(models.Backup, backup_id)
        if backup is None:
            return
        svc.backup_store.delete(backup.object_key)
        s.delete(backup)


def prune_logs(cluster_id: str, before: dt.datetime) -> None:
    """Archived logs older than the oldest kept backup can no longer be replayed."""
    svc = services()
    with svc.store.session() as s:
        old = list(s.scalars(select(models.ArchivedLog).where(
            models.ArchivedLog.cluster_id == cluster_id,
            models.ArchivedLog.archived_at < before)))
        for row in old:
            svc.backup_store.delete(row.object_key)
            s.delete(row)


def due_verifications(now: dt.datetime, clusters: list[models.Cluster]) -> int:
    """Start a verification of the newest available backup of every cluster whose
    ``verify`` schedule has come round (since its last verification, or since the
    schedule was set). A cluster without a backup yet waits for its first."""
    started = 0
    for cluster in clusters:
        if not (cluster.backup_schedule or {}).get("verify"):
            continue
        try:
            started += _verify_if_due(cluster, now)
        except Exception:
            log.exception("scheduled verification of cluster %s (%s) not started; the next "
                          "pass tries again", cluster.id, cluster.name)
    return started


def _verify_if_due(cluster: models.Cluster, now: dt.datetime) -> int:
    svc = services()
    cron = verify_cron(str((cluster.backup_schedule or {})["verify"]))
    with svc.store.session() as s:
        last = s.scalar(select(func.max(models.Operation.created_at)).where(
            models.Operation.cluster_id == cluster.id,
            models.Operation.kind == verification.KIND))
        if not is_due(cron, last or cluster.updated_at, now):
            return 0
        newest = s.scalars(select(models.Backup).where(
            models.Backup.cluster_id == cluster.id, models.Backup.status == "available")
            .order_by(models.Backup.created_at.desc()).limit(1)).first()
        if newest is None:
            return 0
        op = verification.new_verification(svc, s, newest, "scheduled")
        if op is None:
            return 0  # one runs on it already
        s.flush()
    runtime.start(op)
    return 1


def schedule_once() -> None:
    now = models.utcnow()
    clusters = scheduled_clusters()
    due_backups(now, clusters)
    due_verifications(now, clusters)
    apply_retention(now)


def scheduler(interval: float) -> Loop:
    return Loop("scheduler", interval, schedule_once)


def store_sweeper(interval: float, longest_put: float) -> Loop:
    """Aborts uploads left unfinished for longer than any put can run."""
    sweeper = Sweeper(services().backup_store, grace=longest_put + interval)

    def once() -> None:
        if owns_shard(0):  # one worker sweeps the whole store: shard 0's owner
            sweeper.once()
    return Loop("store-sweeper", interval, once)
