"""Backups: taken, listed, shown and deleted through /v2's backup functions.
Restore is instance create with ``restorePoint``. Hoard keeps no backup name or
description: a backup is named by its id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from hoard.api.auth import Principal
from hoard.api.routes import backups
from hoard.api.schemas import BackupRequest, BackupView
from hoard.api.trove.auth import tenant
from hoard.api.trove.catalog import version_id
from hoard.api.trove.models import Lenient

router = APIRouter(prefix="/{project_id}")
Tenant = Annotated[Principal, Depends(tenant)]
STATUS = {"creating": "BUILDING", "available": "COMPLETED", "failed": "FAILED"}


class BackupSpec(Lenient):
    name: str | None = None
    instance: str
    description: str | None = None
    parent_id: str | None = None
    incremental: int | bool = False


class BackupCreate(Lenient):
    backup: BackupSpec


def backup_view(b: BackupView) -> dict[str, Any]:
    return {
        "id": b.id, "name": b.id, "description": b.reason, "instance_id": b.cluster_id,
        "status": STATUS.get(b.status, "NEW"), "parent_id": b.parent_id,
        "size": round(b.size_bytes / 1024 ** 3, 6), "locationRef": None,
        "created": b.created_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "updated": (b.finished_at or b.created_at).strftime("%Y-%m-%dT%H:%M:%S"),
        "datastore": {"type": b.engine, "version": b.version,
                      "version_id": version_id(b.engine, b.version)},
        "fault": {"message": b.error} if b.error else None,
    }


@router.post("/backups", status_code=202)
def create_backup(body: BackupCreate, principal: Tenant, request: Request) -> dict[str, Any]:
    """Full, or incremental (``incremental`` or a ``parent_id``) on top of the
    instance's newest backup: Hoard picks the parent."""
    spec = body.backup
    request_ = BackupRequest(kind="incremental" if spec.incremental or spec.parent_id
                             else "full")
    accepted = backups.create_backup(spec.instance, principal, request, request_)
    return {"backup": backup_view(accepted.backup)}


def _list(principal: Principal, request: Request, instance_id: str | None, limit: int,
          marker: str | None) -> dict[str, Any]:
    page = backups.list_backups(principal, request, instance_id, limit, marker)
    return {"backups": [backup_view(b) for b in page.backups]}


@router.get("/backups")
def list_backups(principal: Tenant, request: Request,
                 instance_id: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 marker: str | None = None) -> dict[str, Any]:
    return _list(principal, request, instance_id, limit, marker)


@router.get("/instances/{instance_id}/backups")
def instance_backups(instance_id: str, principal: Tenant, request: Request,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     marker: str | None = None) -> dict[str, Any]:
    return _list(principal, request, instance_id, limit, marker)


@router.get("/backups/{backup_id}")
def show_backup(backup_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    return {"backup": backup_view(backups.show_backup(backup_id, principal, request))}


@router.delete("/backups/{backup_id}", status_code=202, response_class=Response)
def delete_backup(backup_id: str, principal: Tenant, request: Request) -> Response:
    backups.remove_backup(backup_id, principal, request)
    return Response(status_code=202)
