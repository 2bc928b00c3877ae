"""Datastores, their versions and parameters, flavors (Hoard's sizes) and limits:
read from the same catalog /v2/engines and /v2/sizes show."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from hoard.api.auth import Principal
from hoard.api.routes.projects import show_project
from hoard.api.trove.auth import tenant
from hoard.domain.catalog import SIZES
from hoard.domain.errors import NotFound
from hoard.engines.base import Engine, Parameter
from hoard.workflows.services import Services

router = APIRouter(prefix="/{project_id}")
Tenant = Annotated[Principal, Depends(tenant)]
_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://hoard/trove")


def datastore_id(engine: str) -> str:
    """Stable across restarts and deployments: a uuid5 of the engine's name."""
    return str(uuid.uuid5(_NS, f"datastore:{engine}"))


def version_id(engine: str, version: str) -> str:
    return str(uuid.uuid5(_NS, f"version:{engine}:{version}"))


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def find_engine(svc: Services, ref: str) -> Engine:
    """A datastore by name or id."""
    for name, engine in svc.engines.items():
        if ref in (name, datastore_id(name)):
            return engine
    raise NotFound(f"Datastore '{ref}' cannot be found.")


def find_version(svc: Services, engine: Engine, ref: str) -> str:
    """A datastore version by name or id."""
    for v in svc.versions(engine):
        if ref in (v, version_id(engine.name, v)):
            return v
    raise NotFound(f"Datastore version '{ref}' cannot be found.")


def _version_view(engine: Engine, v: str) -> dict[str, Any]:
    return {"id": version_id(engine.name, v), "name": v, "version": v, "active": 1,
            "datastore": datastore_id(engine.name), "image": "", "packages": "", "links": []}


def _datastore_view(svc: Services, engine: Engine) -> dict[str, Any]:
    versions = svc.versions(engine)
    view: dict[str, Any] = {
        "id": datastore_id(engine.name), "name": engine.name, "links": [],
        "versions": [{"id": version_id(engine.name, v), "name": v, "links": []}
                     for v in versions]}
    if versions:
        view["default_version"] = version_id(engine.name, versions[0])
    return view


@router.get("/datastores")
def list_datastores(_: Tenant, request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"datastores": [_datastore_view(svc, e) for e in svc.engines.values()]}


@router.get("/datastores/{ds}")
def show_datastore(ds: str, _: Tenant, request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"datastore": _datastore_view(svc, find_engine(svc, ds))}


@router.get("/datastores/{ds}/versions")
def list_versions(ds: str, _: Tenant, request: Request) -> dict[str, Any]:
    svc = services(request)
    engine = find_engine(svc, ds)
    return {"versions": [_version_view(engine, v) for v in svc.versions(engine)]}


@router.get("/datastores/{ds}/versions/{v}")
def show_version(ds: str, v: str, _: Tenant, request: Request) -> dict[str, Any]:
    svc = services(request)
    engine = find_engine(svc, ds)
    return {"version": _version_view(engine, find_version(svc, engine, v))}


def _parameter_view(engine: Engine, v: str, p: Parameter) -> dict[str, Any]:
    kind = "string" if p.type == "enum" else p.type
    return {"name": p.name, "type": kind, "min": p.minimum, "max": p.maximum,
            "restart_required": not p.dynamic,
            "datastore_version_id": version_id(engine.name, v)}


@router.get("/datastores/{ds}/versions/{v}/parameters")
def list_parameters(ds: str, v: str, _: Tenant, request: Request) -> dict[str, Any]:
    svc = services(request)
    engine = find_engine(svc, ds)
    version = find_version(svc, engine, v)
    return {"configuration-parameters": [_parameter_view(engine, version, p)
                                         for p in engine.parameters()]}


def flavor_view(name: str) -> dict[str, Any]:
    """A size as a flavor; troveclient copies ``str_id`` into ``id``."""
    size = SIZES[name]
    return {"id": None, "str_id": name, "name": name, "ram": size.memory_mb,
            "vcpus": max(1, round(size.cpus)), "disk": None, "ephemeral": 0, "links": []}


@router.get("/flavors")
def list_flavors(_: Tenant) -> dict[str, Any]:
    return {"flavors": [flavor_view(n) for n in SIZES]}


@router.get("/flavors/{flavor}")
def show_flavor(flavor: str, _: Tenant) -> dict[str, Any]:
    if flavor not in SIZES:
        raise NotFound(f"Resource Flavor '{flavor}' cannot be found.")
    return {"flavor": flavor_view(flavor)}


@router.get("/limits")
def limits(principal: Tenant, request: Request) -> dict[str, Any]:
    """The project's quotas and usage, from the same view GET /v2/projects/{id} gives."""
    p = show_project(principal.project_id, principal, request)
    return {"limits": [{"verb": "ABSOLUTE",
                        "max_instances": p.quotas.clusters, "used_instances": p.usage.clusters,
                        "max_volumes": p.quotas.storage_gb, "used_volumes": p.usage.storage_gb,
                        "max_backups": -1, "used_backups": 0}]}


@router.get("/backup_strategies")
def backup_strategies(_: Tenant) -> dict[str, Any]:
    return {"backup_strategies": []}
