"""MariaDB incremental backups on a real server: a full backup, two incrementals
after it, and restores of new nodes from a chain of them; a chain with a gap is
refused before any data directory exists."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pymysql
import pytest

from hoard.domain.catalog import SIZES
from hoard.domain.nodes import NodeRunner
from hoard.engines.base import Credentials, IncrementalBackups, NodeContext
from hoard.engines.mariadb import MariaDB
from hoard.engines.mariadb.backup import DATA, PLAN, RESTORE_INC, RESTORE_WORK, STAGED
from hoard.providers.local import LocalProvider
from tests.conftest import make_state_dir
from tests.engine_clients import wait_innodb_checkpoint
from tests.engine_harness import Restore, RunningNode, running_node, take_backup

ENGINE = MariaDB()
pytestmark = pytest.mark.skipif(
    not ENGINE.installed_versions() or not shutil.which("mariadb-backup"),
    reason="MariaDB or mariadb-backup is not installed")

BATCH_A = list(range(1, 2001))  # a few MB: the full backup's bulk
BATCH_B, BATCH_C, BATCH_D = [3001, 3002], [3003], [3004]
Backup = tuple[list[bytes], dict[str, str]]


class ChainRestore(MariaDB):
    """MariaDB whose ``restore`` (what the harness calls) restores a chain."""

    def __init__(self, chain: list[Backup]) -> None:
        self.chain = chain

    def restore(self, ctx: NodeContext, runner: NodeRunner, backup: Iterable[bytes],
                meta: Mapping[str, str], logs: list[tuple[str, Iterable[bytes]]],
                target: str | None) -> None:
        self.restore_chain(ctx, runner, [(iter(c), m) for c, m in self.chain], logs, target)


def _query(node: RunningNode, sql: str, *args: Any, many: bool = False) -> list[Any]:
    with pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=node.ctx.admin.user,
                         password=node.ctx.admin.password, database="app", autocommit=True,
                         ssl_ca=node.ca_file, ssl_verify_identity=True,
                         connect_timeout=5) as conn, conn.cursor() as cur:
        if many:
            cur.executemany(sql, args[0])
        else:
            cur.execute(sql, args or None)
        return list(cur.fetchall())


def _insert(node: RunningNode, ids: list[int]) -> None:
    _query(node, "INSERT INTO items VALUES (%s, %s)",
           [(i, f"row {i} " * 200) for i in ids], many=True)


def _ids(node: RunningNode) -> list[int]:
    return [row[0] for row in _query(node, "SELECT id FROM items ORDER BY id")]


def _checkpoint(node: RunningNode) -> None:
    """``wait_innodb_checkpoint``, asked as the node's service account (it may
    set globals)."""
    with pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=node.ctx.service.user,
                         password=node.ctx.service.password, ssl_ca=node.ca_file,
                         ssl_verify_identity=True, autocommit=True,
                         connect_timeout=5) as conn, conn.cursor() as cur:

        def run(statement: str) -> Sequence[Sequence[Any]]:
            cur.execute(statement)
            return cur.fetchall()

        wait_innodb_checkpoint(run)


def _incremental(node: RunningNode, base: Mapping[str, str]) -> Backup:
    meta: dict[str, str] = {}
    chunks = list(ENGINE.backup_incremental(
        node.ctx, node.ca_file, node.provider.runner(node.ctx.node_id), meta, base))
    return chunks, meta


def _restore(chain: list[Backup], source: RunningNode) -> Restore:
    full, meta = chain[0]
    return Restore(full, meta, [], None, source.ctx.service, source.ctx.admin)


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[RunningNode, list[Backup]]]:
    """full after A, inc1 after B, inc2 after C; D after all of them."""
    with running_node(ENGINE) as node:
        _query(node, "CREATE TABLE items (id INT PRIMARY KEY, body TEXT)")
        _insert(node, BATCH_A)
        _checkpoint(node)
        full = take_backup(node)
        _insert(node, BATCH_B)
        _checkpoint(node)
        inc1 = _incremental(node, full[1])
        _insert(node, BATCH_C)
        _checkpoint(node)
        inc2 = _incremental(node, inc1[1])
        _insert(node, BATCH_D)
        yield node, [full, inc1, inc2]


def test_incrementals_record_their_lsns(chain: tuple[RunningNode, list[Backup]]) -> None:
    _, [(full, full_meta), (inc1, inc1_meta), (_, inc2_meta)] = chain
    assert isinstance(ENGINE, IncrementalBackups)
    assert "kind" not in full_meta and int(full_meta["to_lsn"]) > 0
    assert inc1_meta["kind"] == inc2_meta["kind"] == "incremental"
    assert inc1_meta["from_lsn"] == full_meta["to_lsn"]
    assert inc2_meta["from_lsn"] == inc1_meta["to_lsn"]
    assert int(inc2_meta["to_lsn"]) > int(inc1_meta["to_lsn"]) > int(full_meta["to_lsn"])
    assert inc1_meta["binlog_file"] == full_meta["binlog_file"]
    assert int(inc1_meta["binlog_pos"]) > int(full_meta["binlog_pos"])
    assert inc1_meta["end_time"] > full_meta["end_time"]
    size = sum(map(len, full)), sum(map(len, inc1))
    assert size[1] / size[0] < 0.5, size


def test_restore_of_the_whole_chain(chain: tuple[RunningNode, list[Backup]]) -> None:
    source, backups = chain
    with running_node(ChainRestore(backups), restore=_restore(backups, source)) as node:
        assert _ids(node) == BATCH_A + BATCH_B + BATCH_C
        runner = node.provider.runner(node.ctx.node_id)
        assert not runner.exists(RESTORE_INC) and not runner.exists(STAGED)
        _insert(node, [9999])  # writable


def test_restore_of_part_of_the_chain(chain: tuple[RunningNode, list[Backup]]) -> None:
    source, backups = chain
    with running_node(ChainRestore(backups[:2]), restore=_restore(backups, source)) as node:
        assert _ids(node) == BATCH_A + BATCH_B


def test_a_chain_with_a_gap_is_refused(chain: tuple[RunningNode, list[Backup]]) -> None:
    _, [full, inc1, inc2] = chain
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    provider.place("node-bare", set(), 1)
    ctx = NodeContext("node-bare", ENGINE.installed_versions()[0], SIZES["nano"], "127.0.0.1", 1,
                      Credentials("hoard", "x"), Credentials("admin", "y"))
    runner = provider.runner("node-bare")
    try:
        for broken in ([full, inc2], [inc1, inc2], [full, inc2, inc1]):
            with pytest.raises(ValueError, match="broken incremental chain"):
                ENGINE.restore_chain(ctx, runner, [(iter(c), m) for c, m in broken], [], None)
        assert not runner.exists(DATA) and not runner.exists(RESTORE_WORK)
        # The replay would start from the last incremental's binlog position.
        ENGINE.restore_chain(ctx, runner, [(iter(c), m) for c, m in (full, inc1)], [], None)
        plan = json.loads(b"".join(runner.read_stream(PLAN)))
        assert (plan["file"], plan["position"]) == (inc1[1]["binlog_file"],
                                                    int(inc1[1]["binlog_pos"]))
        assert runner.exists(DATA) and not runner.exists(RESTORE_INC)
    finally:
        provider.destroy("node-bare")
        shutil.rmtree(root, ignore_errors=True)
