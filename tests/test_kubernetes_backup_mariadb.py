"""MariaDB backups, incremental backups, binlog shipping and point-in-time
restores on nodes reached only by exec (the Kubernetes provider's runner;
tests/kube_backup_support.py says what stands in for the pod):
mariadb-backup, mbstream, mariadb-binlog and the mariadb client run in the
"pod", the binlogs are shipped by Hoard over exec, every byte through Hoard's
pipeline and backup store. Each restore is checked for its exact rows."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql
import pytest

from hoard.engines.mariadb import MariaDB
from hoard.engines.mariadb.backup import STAGED
from tests.engine_clients import wait_innodb_checkpoint
from tests.kube_backup_support import (
    ExecNode,
    ExecWorld,
    StoredBackup,
    exec_world,
    restore_of,
    secret_free,
)

ENGINE = MariaDB()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    not ENGINE.installed_versions() or not shutil.which("mariadb-backup"),
    reason="MariaDB or mariadb-backup is not installed")]
A, B, C, D = [1, 2, 3], [4, 5], [6], [7, 8]


def _query(node: ExecNode, sql: str, *args: Any, service: bool = False) -> list[Any]:
    creds = node.ctx.service if service else node.ctx.admin
    with pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=creds.user,
                         password=creds.password, database=None if service else "app",
                         autocommit=True, ssl_ca=node.ca_file, ssl_verify_identity=True,
                         connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def _insert(node: ExecNode, ids: list[int]) -> None:
    for i in ids:  # one transaction each
        _query(node, "INSERT INTO items VALUES (%s, %s)", i, f"row {i} " * 100)


def _rows(node: ExecNode) -> list[tuple[int, str]]:
    return [tuple(r) for r in _query(node, "SELECT id, body FROM items ORDER BY id")]


def _expected(*batches: list[int]) -> list[tuple[int, str]]:
    return [(i, f"row {i} " * 100) for batch in batches for i in batch]


def _checkpoint(node: ExecNode) -> None:
    """Until InnoDB checkpoints past what was written (an incremental's base
    LSN is the checkpoint its backup started from)."""
    wait_innodb_checkpoint(lambda statement: _query(node, statement, service=True))


@dataclass
class Source:
    world: ExecWorld
    node: ExecNode
    full: StoredBackup  # after A
    inc: StoredBackup  # after B, on the full one
    logs: list[StoredBackup]
    between: str  # after C committed (and shipped), before D


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with exec_world("hoard-kmaria-") as world, world.node(ENGINE) as node:
        _query(node, "CREATE TABLE items (id INT PRIMARY KEY, body TEXT)")
        _insert(node, A)
        _checkpoint(node)
        full = world.backup(node)
        _insert(node, B)
        _checkpoint(node)
        inc = world.backup(node, base=full)
        _insert(node, C)
        logs = world.ship_logs(node)
        time.sleep(1.1)
        between = datetime.now(UTC).isoformat()
        time.sleep(1.1)
        _insert(node, D)
        logs += world.ship_logs(node)
        yield Source(world, node, full, inc, logs, between)


def test_backups_and_binlogs_by_exec(source: Source) -> None:
    assert source.inc.meta["kind"] == "incremental"
    assert source.inc.meta["from_lsn"] == source.full.meta["to_lsn"]
    assert [log.key.rsplit("/", 1)[1] for log in source.logs] == [
        "binlog.000001.enc", "binlog.000002.enc"]
    assert all(log.meta["last_commit"] for log in source.logs)
    assert ENGINE.closed_logs(source.node.runner) == []  # shipped, then removed there
    items = source.world.argv_items()
    assert any("mariadb-backup" in item for item in items)
    secret_free(source.world, source.node.ctx.service, source.node.ctx.admin)


def test_restore_full_backup_alone(source: Source) -> None:
    with source.world.node(ENGINE, restore=restore_of(source.node, source.full, [], None)) as n:
        assert _rows(n) == _expected(A)


def test_restore_incremental_chain(source: Source) -> None:
    chain = [source.full, source.inc]
    with source.world.node(ENGINE, restore=restore_of(source.node, chain, [], None)) as node:
        assert _rows(node) == _expected(A, B)
        assert not node.runner.exists(STAGED)


def test_restore_to_a_point_in_time(source: Source) -> None:
    restore = restore_of(source.node, source.full, source.logs, source.between)
    with source.world.node(ENGINE, restore=restore) as node:
        assert _rows(node) == _expected(A, B, C)
        _insert(node, [99])  # writable
        assert _rows(node) == _expected(A, B, C, [99])


def test_restore_chain_then_logs_to_the_end(source: Source) -> None:
    restore = restore_of(source.node, [source.full, source.inc], source.logs, None)
    with source.world.node(ENGINE, restore=restore) as node:
        assert _rows(node) == _expected(A, B, C, D)
    secret_free(source.world, source.node.ctx.service, source.node.ctx.admin)


def test_a_gap_in_the_binlogs_is_refused(source: Source) -> None:
    restore = restore_of(source.node, source.full, source.logs[1:], source.between)
    refusal = (r"binlog file binlog\.000002 given, binlog\.000001 expected \(the logs "
               r"must follow on from the backup, without gaps\)")
    with pytest.raises(ValueError, match=refusal), source.world.node(ENGINE, restore=restore):
        pass
