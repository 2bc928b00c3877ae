"""The Trove sub-application, mounted at /v1.0 with its own error bodies, and the
version document Trove clients read first."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hoard.api.trove import accounts, backups, catalog, configurations, errors, instances
from hoard.api.trove.auth import PREFIX, tenant
from hoard.api.trove.errors import NotImplementedYet

ROUTERS = (catalog, instances, accounts, backups, configurations)


def versions(request: Request) -> dict[str, Any]:
    href = str(request.base_url).rstrip("/") + PREFIX + "/"
    return {"versions": [{"id": "v1.0", "status": "CURRENT", "updated": "2012-08-01T00:00:00Z",
                          "links": [{"href": href, "rel": "self"}]}]}


def build(parent: FastAPI) -> FastAPI:
    """The Trove API, sharing the parent's state (its services) and token store."""
    sub = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    sub.state = parent.state
    errors.install(sub)
    for module in ROUTERS:
        sub.include_router(module.router)

    @sub.get("/")
    def version_document(request: Request) -> dict[str, Any]:
        return versions(request)

    @sub.api_route("/{project_id}/mgmt/{rest:path}",
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def management(project_id: str, request: Request) -> Response:
        await tenant(request, project_id)
        return errors.fault("forbidden", 403, "Trove's management API is for operators; "
                            "Hoard's operators use /v2")

    @sub.api_route("/{project_id}/clusters{rest:path}",
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def trove_clusters(project_id: str, request: Request) -> Response:
        await tenant(request, project_id)
        raise NotImplementedYet("Trove clusters are not available: create an instance with "
                                "replica_count for a replicated Hoard cluster")

    return sub


def install(app: FastAPI) -> None:
    """Mount /v1.0. ``GET /`` (the version document for JSON clients) is routed by
    hoard/api/app.py, which gives browsers the console there."""
    app.mount(PREFIX, build(app))


def version_response(request: Request) -> Response:
    """The version list Trove clients read at ``/``."""
    return JSONResponse(versions(request))
