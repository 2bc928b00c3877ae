"""The catalog (engines, versions, parameters, sizes) and the CA certificate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hoard.api.auth import Principal, authenticate
from hoard.domain.catalog import SIZES

router = APIRouter(prefix="/v2", tags=["catalog"])
Auth = Annotated[Principal, Depends(authenticate)]


@router.get("/engines")
def list_engines(_: Auth, request: Request) -> dict[str, Any]:
    engines = request.app.state.services.engines
    return {
        "engines": [
            {
                "name": e.name,
                "display_name": e.display_name,
                "versions": e.versions(),
                "default_version": (e.versions() or [None])[0],
                "parameters": [asdict(p) for p in e.parameters()],
            }
            for e in engines.values()
        ]
    }


@router.get("/sizes")
def list_sizes(_: Auth) -> dict[str, Any]:
    return {"sizes": [asdict(s) for s in SIZES.values()]}


@router.get("/ca.pem", response_class=Response)
def ca_certificate(request: Request) -> Response:
    """Hoard's CA certificate, to verify every database endpoint. Public on purpose."""
    return Response(request.app.state.services.ca.cert_pem, media_type="application/x-pem-file")
