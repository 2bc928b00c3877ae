"""MariaDB backups on real servers: a full backup, binlogs shipped after it, and
restores of new nodes to a point in time, to the end of the logs and to the
backup alone; broken inputs fail before any data directory exists."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import pymysql
import pytest

from hoard.domain.catalog import SIZES
from hoard.engines.base import Credentials, NodeContext
from hoard.engines.mariadb import MariaDB
from hoard.engines.mariadb.backup import DATA, PLAN, REPLAYING, RESTORE_WORK, STAGED
from hoard.providers.local import LocalProvider, LocalRunner, ToolFailed
from tests.conftest import make_state_dir
from tests.engine_harness import (
    Restore,
    RunningNode,
    running_node,
    ship_logs,
    take_backup,
    wait_healthy,
)

ENGINE = MariaDB()
pytestmark = pytest.mark.skipif(
    not ENGINE.installed_versions() or not shutil.which("mariadb-backup"),
    reason="MariaDB or mariadb-backup is not installed")

BATCH_A, BATCH_B, BATCH_C = [1, 2, 3], [4, 5], [6]


@dataclass
class Source:
    node: RunningNode
    backup: list[bytes]
    meta: dict[str, str]
    logs: list[tuple[str, list[bytes]]]
    between_b_and_c: str  # a target after batch B, before batch C

    def restore(self, target: str | None,
                logs: list[tuple[str, list[bytes]]] | None = None) -> Restore:
        """With the source's accounts, which the restored data holds."""
        return Restore(backup=self.backup, meta=self.meta,
                       logs=self.logs if logs is None else logs, target=target,
                       service=self.node.ctx.service, admin=self.node.ctx.admin)


def _admin(node: RunningNode) -> pymysql.Connection:
    return pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=node.ctx.admin.user,
                           password=node.ctx.admin.password, database="app", autocommit=True,
                           ssl_ca=node.ca_file, ssl_verify_identity=True, connect_timeout=5)


def _query(node: RunningNode, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with _admin(node) as conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def _body(i: int) -> str:
    return f"row {i} ✓ " * 100  # over 256 bytes: a compressed binlog event


def _insert(node: RunningNode, ids: list[int]) -> None:
    for i in ids:  # one transaction each
        _query(node, "INSERT INTO items VALUES (%s, %s)", i, _body(i))


def _ids(node: RunningNode) -> list[int]:
    return [row[0] for row in _query(node, "SELECT id FROM items ORDER BY id")]


def _server_id(node: RunningNode) -> int:
    with _admin(node) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    """A: before the backup; B: after it, in the same binlog file; then a rotation,
    the target time, and C in the next file (at a lower position than the
    backup's, which catches a start position applied to every file)."""
    with running_node(ENGINE) as node:
        _query(node, "CREATE TABLE items (id INT PRIMARY KEY, body TEXT)")
        _insert(node, BATCH_A)
        backup, meta = take_backup(node)
        _insert(node, BATCH_B)
        ENGINE.rotate_log(node.ctx, node.ca_file)
        time.sleep(1.1)
        target = datetime.now(UTC).isoformat()
        time.sleep(1.1)
        _insert(node, BATCH_C)
        logs = ship_logs(node)
        yield Source(node, backup, meta, logs, target)


@pytest.fixture
def bare() -> Iterator[tuple[NodeContext, LocalRunner]]:
    """A node directory and its runner, without a server."""
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    provider.place("node-bare", set(), 1)
    ctx = NodeContext("node-bare", ENGINE.installed_versions()[0], SIZES["nano"], "127.0.0.1", 1,
                      Credentials("hoard", "x"), Credentials("admin", "y"))
    try:
        yield ctx, provider.runner("node-bare")
    finally:
        provider.destroy("node-bare")
        shutil.rmtree(root, ignore_errors=True)


def test_backup_records_its_position(source: Source) -> None:
    meta = source.meta
    assert meta["format"] == "mariadb-backup-xbstream"
    assert meta["version"] == ENGINE.installed_versions()[0]
    assert meta["binlog_file"] == "binlog.000001" and int(meta["binlog_pos"]) > 4
    assert datetime.fromisoformat(meta["end_time"]).tzinfo is not None
    assert [name for name, _ in source.logs] == ["binlog.000001", "binlog.000002"]
    runner = source.node.provider.runner(source.node.ctx.node_id)
    assert not runner.exists(PurePosixPath("backup.work"))  # the option file is gone


def test_restore_to_a_point_in_time(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(source.between_b_and_c)) as node:
        assert _ids(node) == BATCH_A + BATCH_B
        assert _query(node, "SELECT body FROM items WHERE id = 4") == [(_body(4),)]
        _insert(node, [100])  # writable
        assert _ids(node)[-1] == 100
        runner = node.provider.runner(node.ctx.node_id)
        assert not runner.exists(STAGED)
        assert _query(node, "SELECT @@log_bin, @@binlog_format") == [(1, "ROW")]
        assert _server_id(node) != _server_id(source.node)  # its own binlog, its own id


def test_restore_to_the_end_of_the_logs(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(None)) as node:
        assert _ids(node) == BATCH_A + BATCH_B + BATCH_C
        _insert(node, [100])
        backup, meta = take_backup(node)  # a restored node is backed up in turn
    again = Restore(backup, meta, [], None, source.node.ctx.service, source.node.ctx.admin)
    with running_node(ENGINE, restore=again) as node:
        assert _ids(node) == [*BATCH_A, *BATCH_B, *BATCH_C, 100]


def test_restore_of_the_backup_alone(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(None, logs=[])) as node:
        assert _ids(node) == BATCH_A
        _insert(node, [100])


def test_a_truncated_backup_leaves_no_data(
        source: Source, bare: tuple[NodeContext, LocalRunner]) -> None:
    ctx, runner = bare
    # Cut at a chunk boundary, then inside a file.
    for cut in (source.backup[:-1], [source.backup[0][:1000]]):
        with pytest.raises((ToolFailed, ValueError)):
            ENGINE.restore(ctx, runner, iter(cut), source.meta, [], None)
        assert not runner.exists(DATA)
        assert not runner.exists(RESTORE_WORK) and not runner.exists(STAGED)
    # A later attempt starts over and succeeds; once done, it is kept.
    logs: list[tuple[str, Iterable[bytes]]] = [(n, iter(c)) for n, c in source.logs]
    ENGINE.restore(ctx, runner, iter(source.backup), source.meta, logs, None)
    assert runner.exists(DATA / "ibdata1") and runner.exists(PLAN)
    assert runner.list_dir(STAGED) == ["binlog.000001", "binlog.000002", "plan.json"]
    ENGINE.restore(ctx, runner, iter([]), source.meta, [], None)  # no-op
    assert runner.list_dir(STAGED) == ["binlog.000001", "binlog.000002", "plan.json"]
    runner.rename(PLAN, REPLAYING)  # as if Hoard died while replaying: never twice
    with pytest.raises(RuntimeError, match="interrupted"):
        ENGINE.finish_restore(ctx, "no CA needed", runner, None)


def test_a_target_before_the_backup_is_refused(
        source: Source, bare: tuple[NodeContext, LocalRunner]) -> None:
    ctx, runner = bare
    end = datetime.fromisoformat(source.meta["end_time"])
    early = (end - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")  # "Z" is UTC too
    with pytest.raises(ValueError, match="before the backup ended"):
        ENGINE.restore(ctx, runner, iter(source.backup), source.meta, [], early)
    with pytest.raises(ValueError, match="without gaps"):
        ENGINE.restore(ctx, runner, iter(source.backup), source.meta,
                       [(name, iter(chunks)) for name, chunks in source.logs[1:]], None)
    with pytest.raises(ValueError, match="not a binlog file name"):
        ENGINE.restore(ctx, runner, iter(source.backup), source.meta,
                       [("../data/ibdata1", iter([b""]))], None)
    assert not runner.exists(DATA) and not runner.exists(STAGED)


def test_the_server_outlives_its_shipped_logs(source: Source) -> None:
    """Hoard removes each file it shipped, behind the server's back; the server
    keeps going, through a crash right after a rotation (the rotation waits for
    the checkpoint that makes the closed files unneeded) and a restart."""
    node = source.node
    runner = node.provider.runner(node.ctx.node_id)

    def ship_and_remove() -> list[str]:
        shipped = [name for name, _ in ship_logs(node)]  # removes them, as Hoard does
        assert not any(runner.exists(PurePosixPath("binlog", name)) for name in shipped)
        return shipped

    assert ship_and_remove() == ["binlog.000003"]  # 1 and 2 went in the fixture
    _insert(node, [7])
    assert ship_and_remove() == ["binlog.000004"]
    pid = node.provider.pid(node.ctx.node_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # crash recovery reads only what the checkpoint names
    while node.provider.is_running(node.ctx.node_id):
        time.sleep(0.02)
    node.provider.start_process(node.ctx.node_id, ENGINE.process(node.ctx, runner))
    wait_healthy(node)
    _insert(node, [8])
    node.restart()
    assert _ids(node) == [*BATCH_A, *BATCH_B, *BATCH_C, 7, 8]
    # 5: crashed, 6: after the crash, 7: after the restart; now 8 after the rotation.
    assert ship_and_remove() == ["binlog.000005", "binlog.000006", "binlog.000007"]
    _, meta = take_backup(node)
    assert meta["binlog_file"] == "binlog.000008"
    assert [p.name for p in ENGINE.closed_logs(runner)] == []
