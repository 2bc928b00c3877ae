"""The backup workflow's and the archiver's own code on the Kubernetes
provider: Hoard's services built in this process, the provider offered from a
kubeconfig naming kmock's emulator, a PostgreSQL cluster of one node reached
only by exec (tests/kube_backup_support.py says what stands in for the pod).
``run_backup`` streams the backup from the pod into Hoard's backup store, the
archiver ships the closed WAL from the pod and records it, and
``restore_inputs`` picks the backup and the logs a point-in-time restore
needs, which a new node restores by exec to exactly the rows of that time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from hoard.engines.postgresql import PostgreSQL
from hoard.ids import new_id
from hoard.store import models
from hoard.workflows import archiver
from hoard.workflows.backups import restore_inputs, run_backup
from hoard.workflows.scheduler import new_backup
from hoard.workflows.services import Services
from hoard.workflows.steps import load_cluster
from tests.kube_backup_support import (
    ExecNode,
    ExecWorld,
    Restore,
    exec_world_with_services,
    pg_sql,
    record_cluster,
    secret_free,
)

pytestmark = pytest.mark.integration
ENGINE = PostgreSQL()
PROJECT = "0190a3b4-0000-7000-8000-0000000000f0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000f1"


def _insert(node: ExecNode, batch: str) -> None:
    pg_sql(node, f"INSERT INTO items SELECT '{batch}', n FROM generate_series(1, 50) n")


def _expected(*batches: str) -> list[tuple]:
    return [(b, n) for b in batches for n in range(1, 51)]




def _archive(svc: Services) -> int:
    """One archiver pass over the cluster, its rotation due."""
    archiver._last_rotation.clear()
    cluster = load_cluster(CLUSTER)
    assert cluster is not None
    return archiver._archive_cluster(cluster, ENGINE)


@pytest.fixture()
def world() -> Iterator[tuple[ExecWorld, Services]]:
    with exec_world_with_services("hoard-kflow-") as made:
        yield made


def test_backup_archive_and_point_in_time_restore(world: tuple[ExecWorld, Services]) -> None:
    served, svc = world
    with served.node(ENGINE, node_id=new_id()) as node:
        assert node.ca_file == svc.ca_file
        record_cluster(svc, node, PROJECT, CLUSTER, "backed", "postgresql")
        pg_sql(node, "CREATE TABLE items (batch text, n int)")
        _insert(node, "A")
        cluster = load_cluster(CLUSTER)
        assert cluster is not None
        with svc.store.session() as s:
            backup = new_backup(cluster, "manual")
            s.add(backup)
            backup_id = backup.id
        run_backup(svc, cluster, backup_id)  # from the pod, by exec, into the store
        _insert(node, "B")
        assert _archive(svc) > 0
        time.sleep(1.1)
        between = datetime.now(UTC).isoformat()
        time.sleep(1.1)
        _insert(node, "C")
        assert _archive(svc) > 0
        with svc.store.session() as s:
            stored = s.get(models.Backup, backup_id)
            assert stored is not None and stored.status == "available"
            assert stored.meta["format"] == "pg_basebackup-tar"
            shipped = list(s.scalars(select(models.ArchivedLog.name).where(
                models.ArchivedLog.cluster_id == CLUSTER)))
            marked = s.scalar(select(models.ArchivedLog).where(
                models.ArchivedLog.complete_until.is_not(None)))
        assert stored.meta["stop_wal"] in shipped and marked is not None
        assert ENGINE.closed_logs(node.runner) == []  # shipped, then removed in the pod
        assert svc.backup_store.exists(stored.object_key)

        chain, logs = restore_inputs(svc, backup_id, between)
        restore = Restore([], [], between, node.ctx.service, node.ctx.admin,
                          given=(list(chain), logs))
        with served.node(ENGINE, restore=restore) as restored:
            assert pg_sql(restored, "SELECT batch, n FROM items ORDER BY batch, n") == \
                _expected("A", "B")
        secret_free(served, node.ctx.service, node.ctx.admin)
