"""/v2/configurations: named parameter sets for one engine version, validated
against the engine's parameter schema, attached to clusters with PATCH.

Editing an attached configuration changes every cluster it is attached to, each
through its own update operation, accepted for all of them or for none (as a
parameter group of a managed database does). It cannot be deleted while attached.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hoard.api.auth import Principal, authenticate
from hoard.api.schemas import (
    ID_SCHEMA,
    ConfigurationCreate,
    ConfigurationUpdate,
    ConfigurationView,
)
from hoard.api.views import operation_view, utc
from hoard.domain import parameters
from hoard.domain.catalog import MAX_STORAGE_GB, SIZES
from hoard.domain.errors import Conflict, InvalidInput, NotFound
from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.engines.base import Parameter
from hoard.ids import is_id, new_id
from hoard.store import locks, operations
from hoard.store.models import Cluster, Configuration, Operation
from hoard.workflows import cluster_update, runtime
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2/configurations", tags=["configurations"])
EDITABLE = (ClusterStatus.ACTIVE, ClusterStatus.DEGRADED, ClusterStatus.STOPPED)
Auth = Annotated[Principal, Depends(authenticate)]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _view(s: Session, c: Configuration) -> ConfigurationView:
    clusters = list(s.scalars(select(Cluster.id).where(Cluster.configuration_id == c.id)))
    return ConfigurationView(
        id=c.id, name=c.name, engine=c.engine, version=c.version, description=c.description,
        values=dict(c.values), clusters=clusters, created_at=utc(c.created_at),
        updated_at=utc(c.updated_at),
    )


def _being_attached(s: Session, config: Configuration) -> bool:
    """Whether a running operation is attaching the configuration: its workflow
    reads the values after the API checked them, so they must not change first."""
    running = s.scalars(select(Operation).where(
        Operation.project_id == config.project_id, Operation.kind == "update",
        Operation.status == OperationStatus.RUNNING))
    return any(op.params.get("configuration_id") == config.id for op in running)


def _get(s: Session, principal: Principal, config_id: str) -> Configuration:
    config = s.get(Configuration, config_id)
    if config is None or config.project_id != principal.project_id:
        raise NotFound(f"no configuration {config_id!r} in this project")
    return config


@router.post("", status_code=201, response_model=ConfigurationView)
def create_configuration(body: ConfigurationCreate, principal: Auth, request: Request
                         ) -> ConfigurationView:
    svc = _services(request)
    engine = svc.engines.get(body.engine)
    if engine is None:
        raise InvalidInput(f"unknown engine {body.engine!r}; available: "
                           f"{', '.join(sorted(svc.engines))}")
    versions = svc.versions(engine)
    version = body.version or (versions[0] if versions else "")
    if version not in versions:
        raise InvalidInput(f"unknown {engine.name} version {version!r}; available: "
                           f"{', '.join(versions)}")
    values = parameters.validate(engine.parameters(), body.values)
    parameters.check_fits_some_size(engine.parameters(), values, MAX_STORAGE_GB)
    try:
        with svc.store.session() as s:
            config = Configuration(id=new_id(), project_id=principal.project_id, name=body.name,
                                   description=body.description, engine=engine.name,
                                   version=version, values=values)
            s.add(config)
            s.flush()
            return _view(s, config)
    except IntegrityError:
        raise Conflict(f"a configuration named {body.name!r} already exists") from None


@router.get("", response_model=dict[str, list[ConfigurationView] | str | None])
def list_configurations(
    principal: Auth, request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[str | None, Query(json_schema_extra=ID_SCHEMA)] = None,
) -> dict[str, list[ConfigurationView] | str | None]:
    if marker is not None and not is_id(marker):
        raise InvalidInput(f"marker {marker!r} is not a configuration id")
    with _services(request).store.session() as s:
        query = select(Configuration).where(Configuration.project_id == principal.project_id)
        if marker:
            query = query.where(Configuration.id > marker)
        rows = list(s.scalars(query.order_by(Configuration.id).limit(limit + 1)))
        views = [_view(s, c) for c in rows[:limit]]
    next_url = (f"/v2/configurations?limit={limit}&marker={views[-1].id}"
                if len(rows) > limit else None)
    return {"configurations": views, "next": next_url}


@router.get("/{config_id}", response_model=ConfigurationView)
def show_configuration(config_id: str, principal: Auth, request: Request) -> ConfigurationView:
    with _services(request).store.session() as s:
        return _view(s, _get(s, principal, config_id))


@router.patch("/{config_id}", response_model=ConfigurationView)
def update_configuration(config_id: str, body: ConfigurationUpdate, principal: Auth,
                         request: Request) -> ConfigurationView:
    """Change the values. On an attached configuration the change reaches every
    attached cluster through its update operation (dynamic settings live, the
    others pending a restart), all or none: every cluster must be free and fit
    the new values, or nothing changes."""
    svc = _services(request)
    with svc.store.session() as s:
        locks.hold_project(s, principal.project_id)  # a create may be taking it
        config = _get(s, principal, config_id)
        if _being_attached(s, config):
            raise Conflict("the configuration is being attached or changed on a cluster; "
                           "try again when that ends")
        schema = svc.engines[config.engine].parameters()
        values = parameters.validate(schema, body.values)
        parameters.check_fits_some_size(schema, values, MAX_STORAGE_GB)
        started = _propagate(s, principal, config, values, schema)
        config.values = values
        if body.description is not None:
            config.description = body.description
        s.flush()
        view = _view(s, config)
        view.operations = [operation_view(op) for op in started]
    for op in started:
        runtime.start(op)
    return view


def _propagate(s: Session, principal: Principal, config: Configuration,
               values: dict[str, Any], schema: list[Parameter]) -> list[Operation]:
    """Claim every cluster the configuration is attached to for an update that
    applies ``values`` (its workflow is told what the servers run now); refuse the
    whole edit if one is busy, not running, or too small for the values."""
    attached = list(s.scalars(select(Cluster).where(Cluster.configuration_id == config.id)
                              .order_by(Cluster.id)))
    if not attached or values == dict(config.values):
        return []
    ops = []
    for cluster in attached:
        parameters.check_fit(schema, values, SIZES[cluster.size], cluster.storage_gb)
        op_id = new_id()
        if not locks.claim_cluster(s, cluster.id, op_id):
            raise Conflict(f"cluster {cluster.name!r} is busy with operation "
                           f"{cluster.operation_id}; try again when it ends")
        s.refresh(cluster)
        if cluster.status not in EDITABLE:
            raise Conflict(f"cluster {cluster.name!r} is {cluster.status}; the configuration "
                           "can change when it is ACTIVE, DEGRADED or STOPPED")
        cluster.status, cluster.status_reason = ClusterStatus.UPDATING, ""
        ops.append(operations.new_operation(
            s, principal.project_id, cluster.id, "update", cluster_update.UPDATE_STEPS,
            detail=f"configuration {config.name} changed",
            params={"configuration_id": config.id, "previous": dict(config.values)},
            op_id=op_id))
    return ops


@router.delete("/{config_id}", status_code=204, response_class=Response)
def delete_configuration(config_id: str, principal: Auth, request: Request) -> Response:
    with _services(request).store.session() as s:
        locks.hold_project(s, principal.project_id)  # a create may be taking it
        config = _get(s, principal, config_id)
        attached = _view(s, config).clusters
        if attached:
            raise Conflict(f"the configuration is attached to {len(attached)} cluster(s); "
                           "detach it first")
        if _being_attached(s, config):
            raise Conflict("the configuration is being attached to a cluster; detach it "
                           "once that ends")
        s.delete(config)
    return Response(status_code=204)
