"""The cluster list's lean path: the same JSON as ``ClusterPage`` built from
plain rows.

Why: a page of 20 clusters through ORM objects and pydantic models cost several
times the query itself, and SQLAlchemy's result machinery alone still cost as
much again. Here one SELECT (the page of clusters joined to their nodes) names
only the columns the view shows (no configuration join, no passwords; the
running operation's kind by its primary key), is
compiled once per store dialect and filter combination, and runs on the
DB-API cursor; rows become dicts in the field order of ``ClusterView`` and
orjson writes them. ``ClusterPage``
stays the route's response model, so the OpenAPI schema is unchanged;
tests/test_listing.py holds the two paths to byte-identical output.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Integer,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
)

from hoard.domain.pooler import POOLER_PORT
from hoard.store.models import Cluster, Node, Operation

# Naive store datetimes are UTC; pydantic writes them as ...Z, and so does this.
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z

_CLUSTER_COLUMNS = (
    Cluster.id, Cluster.name, Cluster.engine, Cluster.version, Cluster.size,
    Cluster.provider, Cluster.node_count, Cluster.durability, Cluster.storage_gb,
    Cluster.status, Cluster.status_reason, Cluster.configuration_id,
    Cluster.pending_restart, Cluster.labels, Cluster.deletion_protection,
    Cluster.endpoint_host, Cluster.rw_port, Cluster.ro_port, Cluster.ro_host,
    Cluster.created_at, Cluster.updated_at, Cluster.maintenance_window,
    Cluster.pooler, Cluster.pooler_host, Cluster.storage_autoscale,
    Cluster.last_verified_restorable_at, Cluster.last_verified_restorable_seconds,
    Cluster.operation_id,
)
_NODE_COLUMNS = (
    Node.id, Node.ordinal, Node.role, Node.status, Node.status_reason, Node.provider,
    Node.host, Node.port, Node.zone, Node.lag_bytes, Node.limits, Node.storage_used_bytes,
    Node.storage_total_bytes, Node.observed_at,
)
# A result row: the cluster's columns, its running operation's kind, then its node's.
_C = len(_CLUSTER_COLUMNS) + 1


@functools.lru_cache(maxsize=512)
def page_sql(dialect: Dialect, by_status: bool, by_engine: bool, after: bool, limit: int,
             label_keys: tuple[str, ...] = ()
             ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """The page's SQL for one dialect, combination of filters and page length,
    the order of its parameters when the driver takes them by position, and the
    values of those the dialect adds itself (SQLite's OFFSET 0).

    The LIMIT is written into the SQL, not bound: PostgreSQL then finds one
    plan good for every project and marker and keeps it (psycopg prepares a
    statement after a few runs), where a bound LIMIT made it plan each page
    afresh, which cost more than running it (0.6 against 1.2 ms a page)."""
    page = select(*_CLUSTER_COLUMNS).where(Cluster.project_id == bindparam("project"))
    if by_status:
        page = page.where(Cluster.status == bindparam("status"))
    if by_engine:
        page = page.where(Cluster.engine == bindparam("engine"))
    if after:
        page = page.where(Cluster.id > bindparam("marker"))
    for i, key in enumerate(label_keys):
        page = page.where(_label(dialect, key) == bindparam(f"label{i}"))
    c = page.order_by(Cluster.id).limit(literal_column(str(int(limit)), Integer)).subquery("c")
    query = (select(c, Operation.kind.label("operation_kind"),
                    *(col.label(f"n_{col.key}") for col in _NODE_COLUMNS))
             .select_from(c.outerjoin(Node, Node.cluster_id == c.c.id)
                          .outerjoin(Operation, Operation.id == c.c.operation_id))
             .order_by(c.c.id, Node.ordinal))
    compiled = query.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    return compiled.string, order, dict(compiled.params)


def _label(dialect: Dialect, key: str) -> ColumnElement[Any]:
    """A label's value as text. Written per dialect (the rows are read on the bare
    driver, past SQLAlchemy's JSON path processing); keys passed the label rules,
    so they hold no quote."""
    if dialect.name == "sqlite":
        return func.json_extract(Cluster.labels, literal(f'$."{key}"'))
    # Text both sides: ->> has overloads, and the value compared is text.
    return Cluster.labels.op("->>", return_type=Text)(cast(literal(key), Text))


def statement(dialect: Dialect, project_id: str, limit: int, marker: str | None,
              status: str | None, engine: str | None,
              labels: tuple[tuple[str, str], ...] = ()) -> tuple[str, Any]:
    """The page's SQL and its parameters, in the form the dialect's driver takes."""
    sql, order, values = page_sql(dialect, status is not None, engine is not None,
                                  marker is not None, limit, tuple(k for k, _ in labels))
    values = {**values, "project": project_id, "status": status, "engine": engine,
              "marker": marker, **{f"label{i}": v for i, (_, v) in enumerate(labels)}}
    return sql, values if order is None else tuple(values[k] for k in order)


def cluster_rows(conn: Connection, project_id: str, limit: int, marker: str | None,
                 status: str | None, engine: str | None,
                 labels: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    """Up to ``limit`` clusters of the project after ``marker``, in id order, each
    a dict shaped like ``ClusterView``; ``labels``: (key, value) pairs all must have."""
    sql, params = statement(conn.dialect, project_id, limit, marker, status, engine, labels)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return shape(rows)


def shape(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """The page's rows (a cluster's columns, then one node's) as cluster dicts."""
    clusters: list[dict[str, Any]] = []
    members: list[Sequence[Any]] = []
    for row in rows:
        if not clusters or clusters[-1]["id"] != row[0]:
            if clusters:
                _finish(clusters[-1], members)
            clusters.append(_cluster(row))
            members = []
        if row[_C] is not None:
            members.append(row)
    if clusters:
        _finish(clusters[-1], members)
    return clusters


def _json(value: Any) -> Any:
    """SQLite hands JSON columns over as text; psycopg has parsed them already."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _time(value: Any) -> dt.datetime | None:
    """SQLite hands datetimes over as text; psycopg as datetimes."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _cluster(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0], "name": r[1], "engine": r[2], "version": r[3], "size": r[4],
        "provider": r[5], "nodes": r[6], "durability": r[7], "storage_gb": r[8],
        "status": r[9], "status_reason": r[10], "configuration_id": r[11],
        "pending_restart": list(_json(r[12]) or []), "labels": dict(_json(r[13]) or {}),
        "deletion_protection": bool(r[14]), "maintenance_window": _json(r[21]) or None,
        "pooler": _json(r[22]) or None,
        "storage_autoscale": _json(r[24]) or None,
        "last_verified_restorable_at": _time(r[25]),
        "last_verified_restorable_seconds": r[26],
        # operation_id, then the operation's kind (joined after the cluster's columns)
        "operation": {"id": r[27], "kind": r[28]} if r[27] and r[28] else None,
        # endpoint_host, rw_port, ro_port, ro_host, pooler_host until _finish
        "endpoints": (*r[15:19], r[23]),
        "members": [], "created_at": _time(r[19]), "updated_at": _time(r[20]),
    }


def _finish(cluster: dict[str, Any], nodes: list[Sequence[Any]]) -> None:
    """Members and endpoints, as ``hoard.api.views`` makes them: the stable pair of
    a replicated cluster, or the primary's own address."""
    cluster["members"] = [_node(n[_C:]) for n in nodes]
    host, rw_port, ro_port, ro_host, pooler_host = cluster["endpoints"]
    if host and rw_port and ro_port:
        found = [{"role": "read-write", "host": host, "port": rw_port},
                 {"role": "read-only", "host": ro_host or host, "port": ro_port}]
    else:
        found = [{"role": "read-write", "host": m["host"], "port": m["port"]}
                 for m in cluster["members"]
                 if m["role"] == "primary" and m["host"] and m["port"]]
    if pooler_host:
        found.append({"role": "pooler", "host": pooler_host, "port": POOLER_PORT})
    cluster["endpoints"] = found


def _node(n: Sequence[Any]) -> dict[str, Any]:
    storage = None if n[12] is None else {"used_bytes": n[11] or 0, "total_bytes": n[12]}
    return {
        "id": n[0], "ordinal": n[1], "role": n[2], "status": n[3], "status_reason": n[4],
        "provider": n[5], "host": n[6], "port": n[7], "zone": n[8], "lag_bytes": n[9],
        "limits": dict(_json(n[10]) or {}), "storage": storage, "observed_at": _time(n[13]),
    }


def page_json(clusters: list[dict[str, Any]], next_url: str | None) -> bytes:
    """A ``ClusterPage`` as JSON bytes."""
    return orjson.dumps({"clusters": clusters, "next": next_url}, option=JSON_OPTIONS)
