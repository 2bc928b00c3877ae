"""/metrics/clusters (admin token): every node's newest metric sample in
Prometheus's text format, labelled project, cluster, node and engine, for an
operator's Prometheus to scrape. Read from the store (what the observer sampled),
so a scrape never reaches a database server and costs one query."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from hoard.api.auth import Principal, authenticate
from hoard.domain import metrics as m
from hoard.store import metrics as stored
from hoard.store.db import Store
from hoard.store.models import utcnow

LABELS = ["project", "cluster", "node", "engine"]
HELP = {
    m.CONNECTIONS: "Client connections open (Hoard's own excluded)",
    m.OPERATIONS: "Transactions (PostgreSQL), statements (MariaDB) or commands (Redis)",
    m.CACHE_HITS: "Reads served from memory",
    m.CACHE_MISSES: "Reads that went to disk (Redis: keyspace misses)",
    m.LOCK_WAITS: "Sessions waiting for a lock (Redis: blocked clients)",
    m.LAG: "Replication lag behind the primary",
    m.STORAGE_USED: "Storage used", m.STORAGE_TOTAL: "Storage size",
    m.CPU_SECONDS: "CPU time used by the node's processes", m.CPU_LIMIT: "The node's CPU limit",
    m.MEMORY_USED: "Memory used (reclaimable page cache excluded)",
    m.MEMORY_LIMIT: "The node's memory limit",
}


class NodeCollector(Collector):
    """One family per metric, a sample per node that has a fresh one."""

    def __init__(self, store: Store, fresh: dt.timedelta) -> None:
        self._store, self._fresh = store, fresh

    def collect(self) -> Iterator[Metric]:
        with self._store.session() as s:
            rows = stored.latest(s, utcnow() - self._fresh)
        for key, words in HELP.items():
            name = "hoard_node_" + key.removesuffix("_total")
            family: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(name, words, labels=LABELS) if m.is_counter(key)
                else GaugeMetricFamily(name, words, labels=LABELS))
            for row in rows:
                if key in row.values:
                    family.add_metric([row.project, row.cluster, row.node_id, row.engine],
                                      row.values[key])
            yield family


router = APIRouter(tags=["meta"])


@router.get("/metrics/clusters", response_class=Response)
def cluster_metrics(principal: Annotated[Principal, Depends(authenticate)],
                    request: Request) -> Response:
    """Every node's newest metrics (Prometheus text format; admin only)."""
    principal.require_admin()
    svc = request.app.state.services
    registry = CollectorRegistry(auto_describe=False)
    fresh = dt.timedelta(seconds=max(30.0, 3 * svc.settings.metrics_interval))
    registry.register(NodeCollector(svc.store, fresh))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
