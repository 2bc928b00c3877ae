"""/v2/backups and /v2/clusters/{id}/backups, backup schedules, and the checks a
restore needs before any work starts (which backup, which time, which window)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hoard.api import changes, offers
from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.schemas import (
    ID_SCHEMA,
    BackupAccepted,
    BackupPage,
    BackupRequest,
    BackupSchedule,
    BackupView,
    ClusterCreate,
    VerificationView,
    Window,
)
from hoard.api.views import utc
from hoard.domain.abilities import Ability
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.domain.status import ClusterStatus
from hoard.engines.base import Backups, IncrementalBackups
from hoard.ids import is_id
from hoard.store import models
from hoard.workflows import backups
from hoard.workflows.scheduler import cron_problem, delete_backup, new_backup, verify_problem
from hoard.workflows.services import Services

router = APIRouter(tags=["backups"])
Auth = Annotated[Principal, Depends(authenticate)]
RUNNING = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def backup_view(b: models.Backup) -> BackupView:
    return BackupView(
        id=b.id, cluster_id=b.cluster_id, cluster_name=b.cluster_name, engine=b.engine,
        version=b.version, kind=b.kind, parent_id=b.parent_id, reason=b.reason,
        status=b.status, error=b.error,
        size_bytes=b.size_bytes, sha256=b.sha256, created_at=utc(b.created_at),
        finished_at=utc(b.finished_at) if b.finished_at else None,
        verified_at=utc(b.verified_at),
        verification=VerificationView.model_validate(b.verification) if b.verification
        else None,
        verifying=b.verifying_operation_id is not None,
    )


def _get_backup(s: Session, principal: Principal, backup_id: str) -> models.Backup:
    backup = s.get(models.Backup, backup_id)
    if backup is None or backup.project_id != principal.project_id:
        raise NotFound(f"no backup {backup_id!r} in this project")
    return backup


@router.post("/v2/clusters/{cluster_id}/backups", status_code=202,
             response_model=BackupAccepted)
def create_backup(cluster_id: str, principal: Auth, request: Request,
                  body: BackupRequest | None = None) -> BackupAccepted:
    """Take a backup now (online; the cluster keeps serving): full, or incremental
    on top of the cluster's newest backup."""
    svc = _services(request)
    kind = body.kind if body else "full"
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        engine = svc.engines[cluster.engine]
        if not isinstance(engine, Backups):
            raise InvalidInput(f"{cluster.engine} clusters cannot be backed up")
        offers.require(svc, cluster.provider, Ability.BACKUPS)
        parent_id = None
        if kind == "incremental":
            if not isinstance(engine, IncrementalBackups):
                raise InvalidInput(f"{engine.display_name} has no incremental backups; "
                                   "its change log is archived continuously instead")
            parent_id = s.scalar(select(models.Backup.id).where(
                models.Backup.cluster_id == cluster.id, models.Backup.status == "available")
                .order_by(models.Backup.created_at.desc()).limit(1))
            if parent_id is None:
                raise InvalidInput("an incremental backup builds on an earlier one: take a "
                                   "full backup first")
        backup = new_backup(cluster, "manual", parent_id=parent_id)
        s.add(backup)
    try:
        accepted = changes.begin(svc, principal, cluster_id, "backup", backups.BACKUP_STEPS,
                                 RUNNING, None, params={"backup_id": backup.id})
    except Exception:
        delete_backup(backup.id)  # nothing half-made: the row goes with the refusal
        raise
    with svc.store.session() as s:
        return BackupAccepted(backup=backup_view(_get_backup(s, principal, backup.id)),
                              operation=accepted.operation)


@router.get("/v2/backups", response_model=BackupPage)
def list_backups(
    principal: Auth, request: Request,
    cluster_id: Annotated[str | None, Query(description="Only this cluster's (even deleted)",
                                            json_schema_extra=ID_SCHEMA)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[str | None, Query(json_schema_extra=ID_SCHEMA)] = None,
) -> BackupPage:
    svc = _services(request)
    for value, what in ((marker, "marker"), (cluster_id, "cluster_id")):
        if value is not None and not is_id(value):
            raise InvalidInput(f"{what} {value!r} is not an id")
    query = select(models.Backup).where(models.Backup.project_id == principal.project_id)
    if cluster_id:
        query = query.where(models.Backup.cluster_id == cluster_id)
    if marker:
        query = query.where(models.Backup.id > marker)
    with svc.store.session() as s:
        rows = list(s.scalars(query.order_by(models.Backup.id).limit(limit + 1)))
        views = [backup_view(b) for b in rows[:limit]]
    restorable = None
    if cluster_id and rows:
        found = backups.window(svc, cluster_id)
        if found:
            restorable = Window(earliest=utc(found[0]), latest=utc(found[1]))
    next_url = None
    if len(rows) > limit:
        next_url = f"/v2/backups?limit={limit}&marker={views[-1].id}" + (
            f"&cluster_id={cluster_id}" if cluster_id else "")
    return BackupPage(backups=views, next=next_url, restorable=restorable)


@router.get("/v2/backups/{backup_id}", response_model=BackupView)
def show_backup(backup_id: str, principal: Auth, request: Request) -> BackupView:
    with _services(request).store.session() as s:
        return backup_view(_get_backup(s, principal, backup_id))


@router.delete("/v2/backups/{backup_id}", status_code=204, response_class=Response)
def remove_backup(backup_id: str, principal: Auth, request: Request) -> Response:
    with _services(request).store.session() as s:
        backup = _get_backup(s, principal, backup_id)
        if backup.status == "creating":
            raise Conflict("the backup is still being taken")
        if backup.verifying_operation_id is not None:
            holder = s.get(models.Operation, backup.verifying_operation_id)
            if holder is not None and holder.status == "running":
                raise Conflict(f"operation {holder.id} is verifying the backup; delete it "
                               "when that ends")
        children = s.scalar(select(func.count()).where(models.Backup.parent_id == backup_id))
        if children:
            raise Conflict(f"{children} incremental backup(s) build on this one; delete "
                           "them first")
    delete_backup(backup_id)
    return Response(status_code=204)


@router.get("/v2/clusters/{cluster_id}/backup-schedule", response_model=BackupSchedule | None)
def show_schedule(cluster_id: str, principal: Auth, request: Request) -> BackupSchedule | None:
    """The cluster's backup schedule and retention; null when it has none."""
    with _services(request).store.session() as s:
        schedule = get_cluster(s, principal, cluster_id).backup_schedule
    return None if schedule is None else BackupSchedule.model_validate(schedule)


@router.put("/v2/clusters/{cluster_id}/backup-schedule", response_model=BackupSchedule)
def set_schedule(cluster_id: str, body: BackupSchedule, principal: Auth, request: Request
                 ) -> BackupSchedule:
    """Back the cluster up on a cron schedule (UTC), with retention; with
    ``verify``, prove its newest backup restorable on a schedule too."""
    today = dt.datetime.now(dt.UTC).date()
    problem = cron_problem(body.cron, today)
    if problem is None and body.verify is not None:
        problem = verify_problem(body.verify, today)
    if problem is not None:
        raise InvalidInput(problem)
    svc = _services(request)
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        offers.require(svc, cluster.provider, Ability.BACKUPS)
        cluster.backup_schedule = body.model_dump()
    return body


@router.delete("/v2/clusters/{cluster_id}/backup-schedule", status_code=204,
               response_class=Response)
def remove_schedule(cluster_id: str, principal: Auth, request: Request) -> Response:
    with _services(request).store.session() as s:
        get_cluster(s, principal, cluster_id).backup_schedule = None
    return Response(status_code=204)


def plan_restore(svc: Services, principal: Principal, body: ClusterCreate) -> dict[str, Any]:
    """Check a restore request before any work: the backup exists, is ours and
    complete, matches the engine, and the time is inside the restorable window."""
    spec = body.restore
    assert spec is not None
    if (spec.backup_id is None) == (spec.cluster_id is None):
        raise InvalidInput("restore needs exactly one of backup_id or cluster_id")
    if spec.backup_id is not None and spec.time is not None:
        raise InvalidInput("restore from a backup_id restores that backup; to choose a time, "
                           "give cluster_id and time")
    target: str | None = None
    if spec.backup_id is not None:
        backup_id = spec.backup_id
    else:
        assert spec.cluster_id is not None
        if spec.time is None:
            raise InvalidInput("restore from cluster_id needs a time")
        if spec.time.tzinfo is None:
            raise InvalidInput("give the restore time with a time zone, e.g. 2026-01-01T12:00Z")
        when = spec.time.astimezone(dt.UTC).replace(tzinfo=None)
        with svc.store.session() as s:
            owned = s.scalar(select(models.Backup.id).where(
                models.Backup.cluster_id == spec.cluster_id,
                models.Backup.project_id == principal.project_id))
        found = backups.window(svc, spec.cluster_id) if owned else None
        if found is None:
            raise InvalidInput(f"cluster {spec.cluster_id!r} has no backups to restore from")
        earliest, latest = found
        span = f"{utc(earliest).isoformat()} to {utc(latest).isoformat()}"
        if when < earliest:
            raise InvalidInput(f"{utc(when).isoformat()} is before that cluster's first "
                               f"backup: outside the restorable window, {span}")
        if when > latest:
            raise InvalidInput(
                f"the logs up to {utc(when).isoformat()} have not been shipped yet: the latest "
                f"restorable time is {utc(latest).isoformat()} (the restorable window is "
                f"{span}; it moves on at least every "
                f"{svc.settings.archive_rotate_seconds:g} s)")
        chosen = backups.backup_for(svc, spec.cluster_id, when)
        assert chosen is not None
        backup_id, target = chosen, utc(when).isoformat()
    with svc.store.session() as s:
        backup = _get_backup(s, principal, backup_id)
        if backup.status != "available":
            raise Conflict(f"backup {backup_id} is {backup.status}, not available")
        if backup.engine != body.engine:
            raise InvalidInput(f"backup {backup_id} is of {backup.engine}, not {body.engine}")
        if body.version not in (None, backup.version):
            raise InvalidInput(f"backup {backup_id} is of {backup.engine} {backup.version}")
        if body.storage_gb < backup.storage_gb:
            raise InvalidInput(f"the backup came from {backup.storage_gb} GB of storage; "
                               f"ask for at least that")
        engine = svc.engines[backup.engine]
        if target is not None and not (isinstance(engine, Backups) and engine.log_kind):
            raise InvalidInput(f"{backup.engine} cannot restore to a point in time")
        return {"backup_id": backup.id, "time": target, "version": backup.version,
                "admin_user": backup.admin_user, "admin_password": backup.admin_password,
                "service_password": backup.service_password}
