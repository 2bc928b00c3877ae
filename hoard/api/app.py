"""The FastAPI application: routes under /v2, problem+json errors, and (in
``hoard serve``) a worker alongside."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from hoard import __version__, console
from hoard.api import metrics, openapi, problems
from hoard.api.auth import bootstrap_admin
from hoard.api.gate import Gate
from hoard.api.lean import LeanList
from hoard.api.loopread import reader_for
from hoard.api.routes import (
    accounts,
    backup_verification,
    backups,
    catalog,
    cluster_changes,
    cluster_metrics,
    clusters,
    configurations,
    logs,
    operations,
    projects,
    whoami,
    workers,
)
from hoard.api.trove import app as trove
from hoard.settings import Settings
from hoard.workflows import runtime
from hoard.workflows.services import build
from hoard.workflows.worker import start_worker, stop_worker


def create_app(settings: Settings, run_workers: bool = True) -> FastAPI:
    """The API; with ``run_workers`` (``hoard serve``) a worker runs in the same
    process, otherwise (``hoard api``) operations are announced to the workers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build(settings, migrate_schema=run_workers)
        bootstrap_admin(services.store, settings)
        app.state.services = services
        app.state.loop_reader = reader_for(services.store.url, services.store.engine.dialect)
        await app.state.loop_reader.open()
        # DBOS refuses blocking calls on an event-loop thread; give it a plain one.
        if run_workers:
            loops = await asyncio.to_thread(start_worker, settings)
        else:
            runtime.connect()
        yield
        await app.state.loop_reader.close()
        if run_workers:
            await asyncio.to_thread(stop_worker, settings, loops)
        else:
            await asyncio.to_thread(runtime.shutdown)

    app = FastAPI(
        title="Hoard",
        version=__version__,
        description="Database-as-a-service: PostgreSQL, MariaDB and Redis clusters from one "
                    "API call.",
        openapi_url="/v2/openapi.json",
        docs_url="/v2/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(LeanList)  # inside the gate: it needs the gate's principal
    app.add_middleware(Gate, metrics=metrics.install(app), max_body_bytes=settings.max_body_bytes)
    for module in (clusters, cluster_changes, cluster_metrics, accounts, backups,
                   backup_verification, configurations, logs, operations, catalog, projects,
                   whoami, workers):
        app.include_router(module.router)
    trove.install(app)
    app.mount(console.PREFIX, console.files(), name="console")
    openapi.install(app)

    @app.get("/", include_in_schema=False)
    def front(request: Request) -> Response:
        """A browser gets the web console; any other client, Trove's version list."""
        if console.wants_html(request):
            return console.page()
        return trove.version_response(request)

    @app.get("/v2", tags=["meta"])
    def root() -> dict[str, Any]:
        return {"version": __version__, "links": {
            "openapi": "/v2/openapi.json", "docs": "/v2/docs", "clusters": "/v2/clusters",
            "engines": "/v2/engines", "sizes": "/v2/sizes", "ca": "/v2/ca.pem",
        }}

    return app


def api_from_environment() -> FastAPI:
    """An API-only app from HOARD_* alone: for ``hoard api --processes N``."""
    return create_app(Settings(), run_workers=False)  # type: ignore[call-arg]
