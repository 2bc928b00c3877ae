"""Prometheus metrics at /metrics (admin token): request rates and latencies (counted
by the gate), and
cluster and operation counts read from the store at scrape time. Every node's
engine metrics are at /metrics/clusters (hoard/api/node_metrics.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from hoard.api import node_metrics
from hoard.api.auth import Principal, authenticate
from hoard.domain.status import OperationStatus
from hoard.store.db import Store
from hoard.store.models import Cluster, Operation


class StoreCollector(Collector):
    """Counts from the store; cheap grouped queries, run only when scraped."""

    def __init__(self, request_store: Callable[[], Store | None]) -> None:
        self._store = request_store

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        if store is None:
            return
        clusters = GaugeMetricFamily("hoard_clusters", "Clusters by engine and status",
                                     labels=["engine", "status"])
        running = GaugeMetricFamily("hoard_operations_running", "Operations in progress",
                                    labels=["kind"])
        with store.session() as s:
            for engine, status, n in s.execute(
                select(Cluster.engine, Cluster.status, func.count()).group_by(
                    Cluster.engine, Cluster.status)
            ):
                clusters.add_metric([engine, status], n)
            for kind, n in s.execute(
                select(Operation.kind, func.count())
                .where(Operation.status == OperationStatus.RUNNING).group_by(Operation.kind)
            ):
                running.add_metric([kind], n)
        yield clusters
        yield running


@dataclass
class ApiMetrics:
    """The API's request counters (fed by the gate) and its registry."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


def install(app: FastAPI) -> ApiMetrics:
    """Serve /metrics (admin token) and return the counters the gate feeds."""
    registry = CollectorRegistry()
    found = ApiMetrics(
        registry=registry,
        requests=Counter("hoard_http_requests", "API requests", ["method", "route", "status"],
                         registry=registry),
        latency=Histogram("hoard_http_request_seconds", "API request latency",
                          ["method", "route"], registry=registry),
    )
    registry.register(StoreCollector(lambda: getattr(app.state, "services", None) and
                                     app.state.services.store))
    router = APIRouter(tags=["meta"])

    @router.get("/metrics", response_class=Response)
    def metrics(principal: Annotated[Principal, Depends(authenticate)]) -> Response:
        principal.require_admin()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    app.include_router(node_metrics.router)
    return found
