"""Changing a running cluster: PATCH (resize, storage, configuration), actions
(restart, stop, start) and the cluster's history of events."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from hoard.api import changes
from hoard.api.auth import Principal, authenticate
from hoard.api.changes import get_cluster
from hoard.api.schemas import Accepted, ClusterPatch, EventPage, EventView
from hoard.api.views import utc
from hoard.domain.catalog import SIZES
from hoard.domain.errors import InvalidInput, NotFound
from hoard.domain.status import ClusterStatus
from hoard.store.models import Configuration, Event
from hoard.workflows import cluster_update
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2/clusters", tags=["clusters"])
Auth = Annotated[Principal, Depends(authenticate)]
RUNNING = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.patch("/{cluster_id}", status_code=202, response_model=Accepted)
def update_cluster(
    cluster_id: str, body: ClusterPatch, principal: Auth, request: Request
) -> Accepted:
    """Resize, grow storage, attach or detach (``null``) a configuration.

    Dynamic settings apply live. A resize restarts only if a changed setting
    needs it; a configuration's restart-only settings wait in ``pending_restart``.
    """
    svc = _services(request)
    fields = body.model_fields_set
    if not fields:
        raise InvalidInput("nothing to change: give size, storage_gb or configuration_id")
    params: dict[str, object] = {}
    with svc.store.session() as s:
        cluster = get_cluster(s, principal, cluster_id)
        if "size" in fields:
            if body.size not in SIZES:
                raise InvalidInput(f"unknown size {body.size!r}; available: {', '.join(SIZES)}")
            if body.size != cluster.size:
                params["size"] = body.size
        if "storage_gb" in fields and body.storage_gb is not None:
            if body.storage_gb < cluster.storage_gb:
                raise InvalidInput(f"storage can grow, not shrink: the cluster has "
                                   f"{cluster.storage_gb} GB")
            if body.storage_gb != cluster.storage_gb:
                changes.check_storage_quota(s, cluster, body.storage_gb)
                params["storage_gb"] = body.storage_gb
        if "configuration_id" in fields and body.configuration_id != cluster.configuration_id:
            if body.configuration_id is not None:
                config = s.get(Configuration, body.configuration_id)
                if config is None or config.project_id != principal.project_id:
                    raise NotFound(f"no configuration {body.configuration_id!r}")
                if (config.engine, config.version) != (cluster.engine, cluster.version):
                    raise InvalidInput(
                        f"configuration {config.name!r} is for {config.engine} "
                        f"{config.version}; the cluster runs {cluster.engine} {cluster.version}")
            params["configuration_id"] = body.configuration_id
    if not params:
        raise InvalidInput("nothing to change: the cluster already has these values")
    detail = ", ".join(f"{k}={v}" for k, v in params.items())
    # A stopped cluster can be changed too: the new settings apply when it starts.
    return changes.begin(svc, principal, cluster_id, "update", cluster_update.UPDATE_STEPS,
                         (*RUNNING, ClusterStatus.STOPPED), ClusterStatus.UPDATING,
                         params=params, detail=detail)


@router.post("/{cluster_id}/actions/{action}", status_code=202, response_model=Accepted)
def cluster_action(
    cluster_id: str, action: Literal["restart", "stop", "start"], principal: Auth,
    request: Request,
) -> Accepted:
    """Restart (applies pending settings), stop (data kept) or start a cluster."""
    allowed = (ClusterStatus.STOPPED,) if action == "start" else RUNNING
    return changes.begin(_services(request), principal, cluster_id, action, [action], allowed,
                         ClusterStatus.UPDATING)


@router.get("/{cluster_id}/events", response_model=EventPage)
def list_events(
    cluster_id: str, principal: Auth, request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[str | None, Query(description="Last id of the previous page")] = None,
) -> EventPage:
    """What happened to the cluster, oldest first, and why anything failed."""
    if marker is not None:
        try:
            uuid.UUID(marker)
        except ValueError:
            raise InvalidInput(f"marker {marker!r} is not an event id") from None
    with _services(request).store.session() as s:
        get_cluster(s, principal, cluster_id)
        query = select(Event).where(Event.cluster_id == cluster_id)
        if marker:
            query = query.where(Event.id > marker)
        rows = list(s.scalars(query.order_by(Event.id).limit(limit + 1)))
    views = [EventView(id=e.id, kind=e.kind, message=e.message, operation_id=e.operation_id,
                       created_at=utc(e.created_at)) for e in rows[:limit]]
    next_url = (f"/v2/clusters/{cluster_id}/events?limit={limit}&marker={views[-1].id}"
                if len(rows) > limit else None)
    return EventPage(events=views, next=next_url)
