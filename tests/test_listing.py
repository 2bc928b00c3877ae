"""The cluster list's lean path writes exactly what the pydantic views would,
byte for byte, on both store backends; and the read connection writes nothing."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from hoard.api import listing
from hoard.api.schemas import ClusterPage
from hoard.api.views import cluster_view
from hoard.ids import new_id
from hoard.store.db import Store
from hoard.store.models import Cluster, Node, Operation, Project
from tests.pgserver import migrated_store


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with migrated_store(request.param) as made:
        yield made


def _node(ordinal: int, **extra: object) -> Node:
    values: dict[str, object] = {
        "id": new_id(), "ordinal": ordinal, "role": "primary" if ordinal == 0 else "replica",
        "provider": "local", "status": "HEALTHY", "status_reason": "", "limits": {}}
    values.update(extra)
    return Node(**values)


_PORTS = itertools.count(41000, 10)  # node addresses are unique across the store


def _fill(store: Store) -> str:
    """A project with clusters of every shape the view distinguishes."""
    pid, port, op_id = new_id(), next(_PORTS), new_id()
    seen = dt.datetime(2026, 11, 3, 12, 0, 1, 250000)
    with store.session() as s:
        s.add(Project(id=pid, name=f"p{pid[-12:]}", is_admin=False, quota_clusters=9,
                      quota_nodes=9, quota_storage_gb=90))
        s.flush()
        shapes: list[tuple[dict[str, object], list[Node]]] = [
            ({"operation_id": op_id}, []),  # BUILDING, nothing placed yet, its create running
            ({"status_reason": "node 0: down", "pending_restart": ["shared_buffers"],
              "storage_autoscale": {"max_gb": 20, "threshold_percent": 85}},
             [_node(0, host="127.0.0.1", port=port, zone="local", observed_at=seen,
                    limits={"cpu": "1 CPU", "memory": "1 GiB"}, status="UNHEALTHY",
                    status_reason="down", storage_used_bytes=10, storage_total_bytes=1000)]),
            ({"endpoint_host": "127.0.0.2", "rw_port": 42001, "ro_port": 42002,
              "node_count": 3, "durability": "sync"},
             [_node(i, host="127.0.0.1", port=port + 1 + i, lag_bytes=i * 7,
                    storage_total_bytes=2000) for i in (2, 0, 1)]),
            ({}, [_node(0, host=None, port=None)]),
        ]
        for n, (extra, nodes) in enumerate(shapes):
            values: dict[str, object] = {
                "id": new_id(), "project_id": pid, "name": f"c{n}", "engine": "postgresql",
                "version": "15", "size": "small", "node_count": 1, "storage_gb": 10,
                "status": "ACTIVE", "status_reason": "", "admin_user": "admin",
                "admin_password": "x", "service_password": "y",
                "created_at": dt.datetime(2026, 11, 3, 12, 0, n),
            }
            values.update(extra)
            cluster = Cluster(**values)
            cluster.nodes = nodes
            s.add(cluster)
        s.add(Operation(id=op_id, project_id=pid, cluster_id=None, kind="create",
                        status="running", steps=[], params={}))
    return pid


def test_lean_page_is_the_pydantic_page(store: Store) -> None:
    pid = _fill(store)
    with store.read() as s:
        lean = listing.page_json(listing.cluster_rows(s, pid, 10, None, None, None), None)
    with store.session() as s:
        rows = s.scalars(select(Cluster).where(Cluster.project_id == pid)
                         .order_by(Cluster.id)).all()
        full = ClusterPage(clusters=[cluster_view(c) for c in rows], next=None)
    assert lean == full.model_dump_json().encode()
    assert b'"operation":{"id":' in lean and b'"kind":"create"}' in lean


def test_lean_page_filters_and_pages(store: Store) -> None:
    pid = _fill(store)
    with store.read() as s:
        every = listing.cluster_rows(s, pid, 10, None, None, None)
        after = listing.cluster_rows(s, pid, 2, every[0]["id"], None, None)
        other = listing.cluster_rows(s, pid, 10, None, None, "redis")
    assert [c["id"] for c in after] == [c["id"] for c in every[1:3]]
    assert other == []


def test_read_connection_never_commits(store: Store) -> None:
    pid = new_id()
    with store.read() as conn:
        conn.execute(Project.__table__.insert().values(
            id=pid, name=f"p{pid[-12:]}", is_admin=False, quota_clusters=1, quota_nodes=1,
            quota_storage_gb=1))
    with store.read() as conn:
        assert conn.execute(select(Project.id).where(Project.id == pid)).first() is None
