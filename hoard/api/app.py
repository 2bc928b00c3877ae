"""The FastAPI application: routes under /v2, problem+json errors, and (in
``hoard serve``) the workers alongside."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from hoard import __version__
from hoard.api import metrics, openapi, problems
from hoard.api.auth import bootstrap_admin
from hoard.api.gate import Gate
from hoard.api.routes import (
    accounts,
    backups,
    catalog,
    cluster_changes,
    clusters,
    configurations,
    operations,
    projects,
)
from hoard.settings import Settings
from hoard.workflows import runtime
from hoard.workflows.archiver import archiver
from hoard.workflows.observer import observer
from hoard.workflows.scheduler import scheduler, store_sweeper
from hoard.workflows.services import build


def create_app(settings: Settings, run_workers: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build(settings)
        bootstrap_admin(services.store, settings)
        app.state.services = services
        loops = [observer(settings.observe_interval, settings.observe_batch),
                 archiver(settings.archive_interval), scheduler(settings.schedule_interval),
                 store_sweeper(settings.sweep_interval, settings.backup_timeout)]
        # DBOS refuses blocking calls on an event-loop thread; give it a plain one.
        if run_workers:
            await asyncio.to_thread(runtime.launch, settings)
            for loop in loops:
                loop.start()
        yield
        if run_workers:
            for loop in loops:
                loop.stop()
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
    app.add_middleware(Gate, metrics=metrics.install(app), max_body_bytes=settings.max_body_bytes)
    for module in (clusters, cluster_changes, accounts, backups, configurations, operations,
                   catalog, projects):
        app.include_router(module.router)
    openapi.install(app)

    @app.get("/v2", tags=["meta"])
    def root() -> dict[str, Any]:
        return {"version": __version__, "links": {
            "openapi": "/v2/openapi.json", "docs": "/v2/docs", "clusters": "/v2/clusters",
            "engines": "/v2/engines", "sizes": "/v2/sizes", "ca": "/v2/ca.pem",
        }}

    return app
