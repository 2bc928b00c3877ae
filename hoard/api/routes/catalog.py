"""The catalog (engines, versions, parameters, sizes) and the CA certificate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hoard.api.auth import Principal, authenticate
from hoard.domain.catalog import MAX_NODES, SIZES
from hoard.domain.errors import NotFound
from hoard.engines.base import (
    AclAccounts,
    Backups,
    Engine,
    IncrementalBackups,
    Pooling,
    Replication,
    SqlAccounts,
)

router = APIRouter(prefix="/v2", tags=["catalog"])
Auth = Annotated[Principal, Depends(authenticate)]


def _engine_view(e: Engine, versions: list[str]) -> dict[str, Any]:
    return {
        "name": e.name,
        "display_name": e.display_name,
        "versions": versions,
        "default_version": versions[0] if versions else None,
        "abilities": [name for name, ability in (
            ("databases", SqlAccounts), ("users", SqlAccounts | AclAccounts),
            ("backups", Backups), ("incremental backups", IncrementalBackups))
            if isinstance(e, ability)] + (
            ["point-in-time restore"] if isinstance(e, Backups) and e.log_kind else []) + (
            ["replicated clusters"] if isinstance(e, Replication) else []) + (
            ["connection pooler"] if isinstance(e, Pooling) else []),
        "max_nodes": MAX_NODES if isinstance(e, Replication) else 1,
        "durabilities": list(e.durabilities) if isinstance(e, Replication) else [],
        "parameters": [asdict(p) for p in e.parameters()],
    }


@router.get("/engines")
def list_engines(_: Auth, request: Request) -> dict[str, Any]:
    """Engines, their versions and the parameter schema configurations are checked against."""
    svc = request.app.state.services
    return {"engines": [_engine_view(e, svc.versions(e)) for e in svc.engines.values()]}


@router.get("/engines/{name}")
def show_engine(name: str, _: Auth, request: Request) -> dict[str, Any]:
    engine = request.app.state.services.engines.get(name)
    if engine is None:
        raise NotFound(f"no engine {name!r}")
    return _engine_view(engine, request.app.state.services.versions(engine))


@router.get("/sizes")
def list_sizes(_: Auth) -> dict[str, Any]:
    return {"sizes": [asdict(s) for s in SIZES.values()]}


@router.get("/ca.pem", response_class=Response)
def ca_certificate(request: Request) -> Response:
    """Hoard's CA certificate, to verify every database endpoint. Public on purpose."""
    return Response(request.app.state.services.ca.cert_pem, media_type="application/x-pem-file")
