"""The catalog (engines, versions, parameters, sizes) and the CA certificate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hoard.api import offers
from hoard.api.auth import Principal, authenticate
from hoard.domain.abilities import Ability
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
from hoard.workflows.services import Services

router = APIRouter(prefix="/v2", tags=["catalog"])
Auth = Annotated[Principal, Depends(authenticate)]


def _abilities(e: Engine) -> list[str]:
    """What the engine can do, by the names providers say they lack."""
    has = {Ability.DATABASES: isinstance(e, SqlAccounts),
           Ability.USERS: isinstance(e, SqlAccounts | AclAccounts),
           Ability.BACKUPS: isinstance(e, Backups),
           Ability.INCREMENTAL_BACKUPS: isinstance(e, IncrementalBackups),
           Ability.POINT_IN_TIME_RESTORE: isinstance(e, Backups) and bool(e.log_kind),
           Ability.REPLICATED_CLUSTERS: isinstance(e, Replication),
           Ability.CONNECTION_POOLER: isinstance(e, Pooling)}
    return [str(ability) for ability, yes in has.items() if yes]


def _engine_view(svc: Services, e: Engine) -> dict[str, Any]:
    """The default provider's versions in ``versions`` (as before providers were
    many); every provider's in ``version_providers`` and ``providers``."""
    versions = svc.versions(e)
    abilities = _abilities(e)
    return {
        "name": e.name,
        "display_name": e.display_name,
        "versions": versions,
        "default_version": versions[0] if versions else None,
        "version_providers": offers.by_version(svc, e),
        "providers": offers.by_provider(svc, e, abilities),
        "abilities": abilities,
        "max_nodes": MAX_NODES if isinstance(e, Replication) else 1,
        "durabilities": list(e.durabilities) if isinstance(e, Replication) else [],
        "parameters": [asdict(p) for p in e.parameters()],
    }


@router.get("/engines")
def list_engines(_: Auth, request: Request) -> dict[str, Any]:
    """Engines, their versions and the parameter schema configurations are checked
    against; each version's providers, and what each provider cannot do yet."""
    svc: Services = request.app.state.services
    return {"engines": [_engine_view(svc, e) for e in svc.engines.values()],
            "providers": offers.providers(svc)}


@router.get("/engines/{name}")
def show_engine(name: str, _: Auth, request: Request) -> dict[str, Any]:
    svc: Services = request.app.state.services
    engine = svc.engines.get(name)
    if engine is None:
        raise NotFound(f"no engine {name!r}")
    return _engine_view(svc, engine)


@router.get("/sizes")
def list_sizes(_: Auth) -> dict[str, Any]:
    return {"sizes": [asdict(s) for s in SIZES.values()]}


@router.get("/ca.pem", response_class=Response)
def ca_certificate(request: Request) -> Response:
    """Hoard's CA certificate, to verify every database endpoint. Public on purpose."""
    return Response(request.app.state.services.ca.cert_pem, media_type="application/x-pem-file")
