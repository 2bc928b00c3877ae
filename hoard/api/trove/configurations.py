"""Configuration groups, through /v2's configuration functions. PUT replaces the
values, PATCH merges them; as in /v2, a configuration attached to an instance is not
changed (detach it, or make a new one and attach that)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from hoard.api.auth import Principal
from hoard.api.routes import clusters, configurations
from hoard.api.schemas import ConfigurationCreate, ConfigurationUpdate, ConfigurationView
from hoard.api.trove.auth import tenant
from hoard.api.trove.catalog import datastore_id, find_engine, find_version, services, version_id
from hoard.api.trove.instances import strict
from hoard.api.trove.models import DatastoreRef, Lenient
from hoard.domain.errors import InvalidInput

router = APIRouter(prefix="/{project_id}/configurations")
Tenant = Annotated[Principal, Depends(tenant)]


class ConfigurationSpec(Lenient):
    name: str | None = None
    description: str | None = None
    values: dict[str, Any] | None = None
    datastore: DatastoreRef | None = None


class ConfigurationBody(Lenient):
    configuration: ConfigurationSpec


def configuration_view(c: ConfigurationView) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "description": c.description, "values": c.values,
        "datastore_name": c.engine, "datastore_version_name": c.version,
        "datastore_version_id": version_id(c.engine, c.version),
        "datastore_id": datastore_id(c.engine),
        "instance_count": len(c.clusters),
        "created": c.created_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "updated": c.updated_at.strftime("%Y-%m-%dT%H:%M:%S"),
    }


@router.post("")
def create_configuration(body: ConfigurationBody, principal: Tenant,
                         request: Request) -> dict[str, Any]:
    spec = body.configuration
    if spec.datastore is None or not spec.datastore.type:
        raise InvalidInput("datastore.type is required")
    svc = services(request)
    engine = find_engine(svc, spec.datastore.type)
    version = find_version(svc, engine, spec.datastore.version) if spec.datastore.version \
        else None
    create: ConfigurationCreate = strict(ConfigurationCreate, {
        "name": spec.name, "engine": engine.name, "version": version,
        "description": spec.description or "", "values": spec.values or {}})
    view = configurations.create_configuration(create, principal, request)
    return {"configuration": configuration_view(view)}


@router.get("")
def list_configurations(principal: Tenant, request: Request,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        marker: str | None = None) -> dict[str, Any]:
    page = configurations.list_configurations(principal, request, limit, marker)
    found = page["configurations"]
    assert isinstance(found, list)
    return {"configurations": [configuration_view(c) for c in found]}


@router.get("/{config_id}")
def show_configuration(config_id: str, principal: Tenant, request: Request) -> dict[str, Any]:
    view = configurations.show_configuration(config_id, principal, request)
    return {"configuration": configuration_view(view)}


@router.get("/{config_id}/instances")
def configuration_instances(config_id: str, principal: Tenant,
                            request: Request) -> dict[str, Any]:
    view = configurations.show_configuration(config_id, principal, request)
    return {"instances": [{"id": c, "name": clusters.show_cluster(c, principal, request).name}
                          for c in view.clusters]}


def _update(config_id: str, principal: Principal, request: Request, spec: ConfigurationSpec,
            merge: bool) -> None:
    if spec.name is not None:
        current = configurations.show_configuration(config_id, principal, request)
        if spec.name != current.name:
            raise InvalidInput("Hoard's configurations keep their name")
    values = dict(spec.values or {})
    if merge:
        values = configurations.show_configuration(config_id, principal, request).values \
            | values
    update: ConfigurationUpdate = strict(ConfigurationUpdate,
                                         {"values": values, "description": spec.description})
    configurations.update_configuration(config_id, update, principal, request)


@router.put("/{config_id}", status_code=202, response_class=Response)
def replace_configuration(config_id: str, body: ConfigurationBody, principal: Tenant,
                          request: Request) -> Response:
    _update(config_id, principal, request, body.configuration, merge=False)
    return Response(status_code=202)


@router.patch("/{config_id}", status_code=200, response_class=Response)
def patch_configuration(config_id: str, body: ConfigurationBody, principal: Tenant,
                        request: Request) -> Response:
    _update(config_id, principal, request, body.configuration, merge=True)
    return Response(status_code=200)


@router.delete("/{config_id}", status_code=202, response_class=Response)
def delete_configuration(config_id: str, principal: Tenant, request: Request) -> Response:
    configurations.delete_configuration(config_id, principal, request)
    return Response(status_code=202)
