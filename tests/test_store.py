"""The state store's suite, run against both backends: SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from hoard.domain.status import ClusterStatus, OperationStatus
from hoard.ids import new_id
from hoard.store import locks, operations
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
        operations.finish(s, op.id, error="boom")
        operations.finish(s, op.id)  # a finished operation stays as it ended
    with store.session() as s:
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


def _at_once(count: int, work: Callable[[int], bool]) -> list[bool]:
    """Run ``work(i)`` in ``count`` threads released together."""
    barrier = threading.Barrier(count)

    def run(i: int) -> bool:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_one_claim_wins_among_ten(store: Store) -> None:
    pid = _project(store)
    with store.session() as s:
        cluster = _cluster(pid, "claimed")
        s.add(cluster)
    ops = [new_id() for _ in range(10)]

    def claim(i: int) -> bool:
        with store.session() as s:
            return locks.claim_cluster(s, cluster.id, ops[i])

    won = _at_once(10, claim)
    assert won.count(True) == 1
    winner = ops[won.index(True)]
    with store.session() as s:
        row = s.get(Cluster, cluster.id)
        assert row is not None and row.operation_id == winner
        locks.release_cluster(s, cluster.id, ops[0 if winner != ops[0] else 1])  # not its
    with store.session() as s:
        assert not locks.claim_cluster(s, cluster.id, new_id())
        locks.release_cluster(s, cluster.id, winner)
    with store.session() as s:
        assert locks.claim_cluster(s, cluster.id, new_id())


def test_finishing_an_operation_frees_its_cluster(store: Store) -> None:
    pid = _project(store)
    with store.session() as s:
        cluster = _cluster(pid, "freed")
        s.add(cluster)
    op_id = new_id()
    with store.session() as s:
        assert locks.claim_cluster(s, cluster.id, op_id)
        operations.new_operation(s, pid, cluster.id, "restart", ["restart"], op_id=op_id)
    with store.session() as s:
        operations.finish(s, op_id, error="boom")
    with store.session() as s:
        row = s.get(Cluster, cluster.id)
        assert row is not None and row.operation_id is None


def test_a_held_project_admits_changes_one_at_a_time(store: Store) -> None:
    """Ten creates racing for a quota of five clusters: exactly five land."""
    pid = _project(store)

    def create(i: int) -> bool:
        with store.session() as s:
            locks.hold_project(s, pid)
            used = s.scalar(select(func.count(Cluster.id)).where(Cluster.project_id == pid))
            if used >= 5:
                return False
            s.add(_cluster(pid, f"q{i}"))
        return True

    assert _at_once(10, create).count(True) == 5
    with store.session() as s:
        assert s.scalar(select(func.count(Cluster.id)).where(Cluster.project_id == pid)) == 5


def test_no_schedule_is_sql_null(store: Store) -> None:
    pid = _project(store)
    with store.session() as s:
        cluster = _cluster(pid, "sched")
        cluster.backup_schedule = {"cron": "0 3 * * *"}
        s.add(cluster)
    with store.session() as s:
        row = s.get(Cluster, cluster.id)
        assert row is not None
        row.backup_schedule = None
    with store.session() as s:
        assert s.scalar(select(Cluster.id).where(Cluster.id == cluster.id,
                                                 Cluster.backup_schedule.is_(None)))


def test_migration_0011_repairs_json_nulls_and_claims_running_operations() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'state.sqlite'}"
        migrate(url, "0010")
        old = Store(url)
        pid, free, busy, op_id = new_id(), new_id(), new_id(), new_id()
        with old.engine.begin() as conn:
            conn.execute(text("INSERT INTO projects (id, name, is_admin, quota_clusters, "
                              "quota_nodes, quota_storage_gb, created_at) VALUES "
                              "(:p, 'old', 0, 5, 5, 50, '2026-01-01')"), {"p": pid})
            for cid, name in ((free, "free"), (busy, "busy")):
                conn.execute(text(
                    "INSERT INTO clusters (id, shard, project_id, name, engine, version, size, "
                    "node_count, storage_gb, status, status_reason, pending_restart, "
                    "running_parameters, backup_schedule, durability, admin_user, "
                    "admin_password, service_password, created_at, updated_at) VALUES "
                    "(:c, 0, :p, :n, 'redis', '7', 'nano', 1, 1, 'ACTIVE', '', '[]', 'null', "
                    "'null', 'async', 'a', 'x', 'y', '2026-01-01', '2026-01-01')"),
                    {"c": cid, "p": pid, "n": name})
            conn.execute(text(
                "INSERT INTO operations (id, project_id, cluster_id, kind, status, progress, "
                "error, params, steps, created_at, updated_at) VALUES (:o, :p, :c, 'restart', "
                "'running', 0, '', '{}', '[]', '2026-01-01', '2026-01-01')"),
                {"o": op_id, "p": pid, "c": busy})
        old.engine.dispose()
        migrate(url)
        store = Store(url)
        with store.session() as s:
            rows = {c.name: c for c in s.scalars(select(Cluster).where(
                Cluster.backup_schedule.is_(None), Cluster.running_parameters.is_(None)))}
            assert set(rows) == {"free", "busy"}
            assert rows["free"].operation_id is None
            assert rows["busy"].operation_id == op_id
        store.engine.dispose()
