"""PostgreSQL backups, WAL shipping and point-in-time restores on nodes reached
only by exec (the Kubernetes provider's runner; tests/kube_backup_support.py
says what stands in for the pod): pg_basebackup, pg_waldump, tar and
pg_verifybackup run in the "pod", the WAL is archived there by the server's
own archive_command and shipped by Hoard over exec, every byte through Hoard's
pipeline and backup store. Each restore is checked for its exact rows."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from hoard.engines.postgresql import PostgreSQL
from tests.kube_backup_support import (
    ExecNode,
    ExecWorld,
    StoredBackup,
    exec_world,
    pg_sql,
    restore_of,
    secret_free,
)

pytestmark = pytest.mark.integration
ENGINE = PostgreSQL()


def _insert(node: ExecNode, batch: str) -> None:
    pg_sql(node, f"INSERT INTO items SELECT '{batch}', n FROM generate_series(1, 100) n")


def _rows(node: ExecNode) -> list[tuple]:
    return pg_sql(node, "SELECT batch, n FROM items ORDER BY batch, n")


def _expected(*batches: str) -> list[tuple]:
    return [(b, n) for b in batches for n in range(1, 101)]


@dataclass
class Source:
    world: ExecWorld
    node: ExecNode
    backup: StoredBackup
    logs: list[StoredBackup]
    between: str  # after batch B committed, before batch C


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    """A node with batch A in its backup, B shipped before a recorded time, C after."""
    with exec_world("hoard-kpg-") as world, world.node(ENGINE) as node:
        pg_sql(node, "CREATE TABLE items (batch text, n int)")
        _insert(node, "A")
        backup = world.backup(node)
        _insert(node, "B")
        logs = world.ship_logs(node)  # B and C in different WAL files
        time.sleep(1.1)
        between = datetime.now(UTC).isoformat()
        time.sleep(1.1)
        _insert(node, "C")
        logs += world.ship_logs(node)
        yield Source(world, node, backup, logs, between)


def test_backup_taken_and_wal_shipped_by_exec(source: Source) -> None:
    meta = source.backup.meta
    assert meta["format"] == "pg_basebackup-tar" and meta["timeline"] == "1"
    names = [log.key.rsplit("/", 1)[1] for log in source.logs]
    assert any(n.endswith(".backup.enc") for n in names)  # the backup's history file
    assert f"{meta['stop_wal']}.enc" in names
    argvs = source.world.standin.argvs()
    assert any("pg_basebackup" in item for argv in argvs for item in argv)
    assert any("pg_waldump" in item for argv in argvs for item in argv)
    # Shipped files are removed from the pod's volume.
    assert ENGINE.closed_logs(source.node.runner) == []
    secret_free(source.world, source.node.ctx.service, source.node.ctx.admin)


def test_restore_backup_alone(source: Source) -> None:
    restore = restore_of(source.node, source.backup, [], None)
    with source.world.node(ENGINE, restore=restore) as node:
        assert _rows(node) == _expected("A")


def test_restore_to_a_point_in_time(source: Source) -> None:
    restore = restore_of(source.node, source.backup, source.logs, source.between)
    with source.world.node(ENGINE, restore=restore) as node:
        assert _rows(node) == _expected("A", "B")
        _insert(node, "D")  # promoted: writable
        assert _rows(node) == _expected("A", "B", "D")
        assert not node.runner.exists(PurePosixPath("recovery"))


def test_restore_to_the_end_of_the_logs(source: Source) -> None:
    restore = restore_of(source.node, source.backup, source.logs, None)
    with source.world.node(ENGINE, restore=restore) as node:
        assert _rows(node) == _expected("A", "B", "C")
    secret_free(source.world, source.node.ctx.service, source.node.ctx.admin)


def test_a_target_before_the_backup_is_refused(source: Source) -> None:
    too_early = "2020-01-01T00:00:00+00:00"
    restore = restore_of(source.node, source.backup, source.logs, too_early)
    refusal = re.escape(f"restore target {too_early} is before the end of the backup "
                        f"({source.backup.meta['end_time']}); choose a later time or an "
                        "older backup")
    with pytest.raises(ValueError, match=refusal), source.world.node(ENGINE, restore=restore):
        pass
