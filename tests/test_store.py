"""The state store's suite, run against both backends: SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.store import operations
from hoard.store.db import Store, migrate
from hoard.store.models import Cluster, Node, Project, Token
from tests.pgserver import postgres_store


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'state.sqlite'}"
            migrate(url)
            migrate(url)  # idempotent
            yield Store(url)
    else:
        with postgres_store() as url:
            migrate(url)
            migrate(url)
            store = Store(url)
            yield store
            store.engine.dispose()


def _project(store: Store) -> str:
    pid = new_id()
    with store.session() as s:
        s.add(Project(id=pid, name=f"p{pid[-12:]}", is_admin=False, quota_clusters=5,
                      quota_nodes=5, quota_storage_gb=50))
    return pid


def _cluster(project_id: str, name: str, status: str = ClusterStatus.ACTIVE) -> Cluster:
    cluster = Cluster(
        id=new_id(), project_id=project_id, name=name, engine="postgresql", version="15",
        size="small", node_count=1, storage_gb=10, status=status, status_reason="",
        admin_user="admin", admin_password="x", service_password="y",
    )
    cluster.nodes = [Node(id=new_id(), ordinal=0, role="primary", provider="local",
                          status="PENDING", status_reason="", limits={})]
    return cluster


def test_cluster_names_are_unique_per_project(store: Store) -> None:
    p1, p2 = _project(store), _project(store)
    with store.session() as s:
        s.add(_cluster(p1, "db"))
        s.add(_cluster(p2, "db"))  # same name, other project: fine
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(_cluster(p1, "db"))


def test_nodes_cascade_with_their_cluster(store: Store) -> None:
    pid = _project(store)
    cluster = _cluster(pid, "cascade")
    with store.session() as s:
        s.add(cluster)
    with store.session() as s:
        s.delete(s.get(Cluster, cluster.id))
    with store.session() as s:
        assert s.scalars(select(Node).where(Node.cluster_id == cluster.id)).all() == []


def test_keyset_order_is_creation_order(store: Store) -> None:
    pid = _project(store)
    made = []
    with store.session() as s:
        for i in range(30):
            c = _cluster(pid, f"k{i}")
            made.append(c.id)
            s.add(c)
    seen: list[str] = []
    marker = ""
    while True:
        with store.session() as s:
            page = s.scalars(
                select(Cluster.id).where(Cluster.project_id == pid, Cluster.id > marker)
                .order_by(Cluster.id).limit(7)
            ).all()
        if not page:
            break
        seen.extend(page)
        marker = page[-1]
    assert seen == made


def test_operation_steps_and_progress(store: Store) -> None:
    pid = _project(store)
    with store.session() as s:
        op = operations.new_operation(s, pid, new_id(), "create", ["a", "b", "c", "d"])
    with store.session() as s:
        operations.mark_step(s, op.id, "a", "running")
        operations.mark_step(s, op.id, "a", "done")
        operations.mark_step(s, op.id, "b", "done")
    with store.session() as s:
        assert operations.running_for(s, op.cluster_id or "") is not None
        operations.finish(s, op.id, error="boom")
        operations.finish(s, op.id)  # a finished operation stays as it ended
    with store.session() as s:
        row = operations.running_for(s, op.cluster_id or "")
        assert row is None
        from hoard.store.models import Operation

        done = s.get(Operation, op.id)
        assert done is not None
        assert done.progress == 50
        assert done.status == OperationStatus.FAILED and done.error == "boom"
        assert [st["status"] for st in done.steps] == ["done", "done", "pending", "pending"]


def test_token_hash_is_unique(store: Store) -> None:
    pid = _project(store)
    with store.session() as s:
        s.add(Token(id=new_id(), project_id=pid, token_hash="a" * 64, description=""))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(Token(id=new_id(), project_id=pid, token_hash="a" * 64, description=""))


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """Every model change has its Alembic migration (autogenerate finds nothing to add)."""
    from alembic import command
    from alembic.config import Config

    from hoard.store.db import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'check.sqlite'}"
    migrate(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.check(cfg)  # raises if the models and the migrations disagree
