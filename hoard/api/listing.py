"""The cluster list's lean path: the same JSON as ``ClusterPage`` built from
plain rows.

Why: a page of 20 clusters through ORM objects and pydantic models cost several
times the query itself. Here two SELECTs name only the columns the view shows
(no configuration join, no passwords), rows become dicts in the field order of
``ClusterView``, and orjson writes them. ``ClusterPage`` stays the route's
response model, so the OpenAPI schema is unchanged; tests/test_listing.py holds
the two paths to byte-identical output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from hoard.store.models import Cluster, Node

# Naive store datetimes are UTC; pydantic writes them as ...Z, and so does this.
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z

_Row = Any  # a Row of the columns below; SQLAlchemy types each one apart
_CLUSTER_COLUMNS = (
    Cluster.id, Cluster.name, Cluster.engine, Cluster.version, Cluster.size,
    Cluster.node_count, Cluster.durability, Cluster.storage_gb, Cluster.status,
    Cluster.status_reason, Cluster.configuration_id, Cluster.pending_restart,
    Cluster.endpoint_host, Cluster.rw_port, Cluster.ro_port, Cluster.created_at,
    Cluster.updated_at,
)
_NODE_COLUMNS = (
    Node.cluster_id, Node.id, Node.ordinal, Node.role, Node.status, Node.status_reason,
    Node.provider, Node.host, Node.port, Node.zone, Node.lag_bytes, Node.limits,
    Node.storage_used_bytes, Node.storage_total_bytes, Node.observed_at,
)


def cluster_rows(s: Session, project_id: str, limit: int, marker: str | None,
                 status: str | None, engine: str | None) -> list[dict[str, Any]]:
    """Up to ``limit`` clusters of the project after ``marker``, in id order, each
    a dict shaped like ``ClusterView``."""
    query = select(*_CLUSTER_COLUMNS).where(Cluster.project_id == project_id)
    if status is not None:
        query = query.where(Cluster.status == status)
    if engine is not None:
        query = query.where(Cluster.engine == engine)
    if marker is not None:
        query = query.where(Cluster.id > marker)
    clusters = s.execute(query.order_by(Cluster.id).limit(limit)).all()
    if not clusters:
        return []
    members: dict[str, list[_Row]] = {c.id: [] for c in clusters}
    for node in s.execute(select(*_NODE_COLUMNS)
                          .where(Node.cluster_id.in_(list(members)))
                          .order_by(Node.cluster_id, Node.ordinal)):
        members[node.cluster_id].append(node)
    return [_cluster(c, members[c.id]) for c in clusters]


def _cluster(c: _Row, nodes: Sequence[_Row]) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "engine": c.engine, "version": c.version,
        "size": c.size, "nodes": c.node_count, "durability": c.durability,
        "storage_gb": c.storage_gb, "status": c.status, "status_reason": c.status_reason,
        "configuration_id": c.configuration_id,
        "pending_restart": list(c.pending_restart or []),
        "endpoints": _endpoints(c, nodes),
        "members": [_node(n) for n in nodes],
        "created_at": c.created_at, "updated_at": c.updated_at,
    }


def _endpoints(c: _Row, nodes: Sequence[_Row]) -> list[dict[str, Any]]:
    """As ``hoard.api.views.endpoints``: the stable pair, or the primary's own address."""
    if c.endpoint_host and c.rw_port and c.ro_port:
        return [{"role": "read-write", "host": c.endpoint_host, "port": c.rw_port},
                {"role": "read-only", "host": c.endpoint_host, "port": c.ro_port}]
    return [{"role": "read-write", "host": n.host, "port": n.port}
            for n in nodes if n.role == "primary" and n.host and n.port]


def _node(n: _Row) -> dict[str, Any]:
    storage = None if n.storage_total_bytes is None else {
        "used_bytes": n.storage_used_bytes or 0, "total_bytes": n.storage_total_bytes}
    return {
        "id": n.id, "ordinal": n.ordinal, "role": n.role, "status": n.status,
        "status_reason": n.status_reason, "provider": n.provider, "host": n.host,
        "port": n.port, "zone": n.zone, "lag_bytes": n.lag_bytes,
        "limits": dict(n.limits or {}), "storage": storage, "observed_at": n.observed_at,
    }


def page_json(clusters: list[dict[str, Any]], next_url: str | None) -> bytes:
    """A ``ClusterPage`` as JSON bytes."""
    return orjson.dumps({"clusters": clusters, "next": next_url}, option=JSON_OPTIONS)
