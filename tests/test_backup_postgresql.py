"""PostgreSQL backups on real servers: pg_basebackup, WAL archiving, and restores
of new nodes to the end of the WAL or to a point in time."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import PurePosixPath

import psycopg
import pytest

from hoard.engines.base import Credentials, NodeContext
from hoard.engines.postgresql import PostgreSQL
from tests import engine_harness
from tests.engine_harness import Restore, RunningNode, running_node, ship_logs, take_backup

pytestmark = pytest.mark.integration
ENGINE = PostgreSQL()


def _sql(node: RunningNode, query: str, creds: Credentials | None = None) -> list[tuple]:
    """Run ``query`` in the tenant's database (as its admin unless told otherwise)."""
    creds = creds or node.ctx.admin
    with psycopg.connect(host=node.ctx.host, port=node.ctx.port, dbname="app",
                         user=creds.user, password=creds.password, sslmode="verify-full",
                         sslrootcert=node.ca_file, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def _insert(node: RunningNode, batch: str) -> None:
    _sql(node, f"INSERT INTO items SELECT '{batch}', n FROM generate_series(1, 1000) n")


def _batches(node: RunningNode) -> list[str]:
    return [b for (b,) in _sql(node, "SELECT DISTINCT batch FROM items ORDER BY batch")]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Source:
    ctx: NodeContext
    backup: list[bytes]
    meta: dict[str, str]
    logs: list[tuple[str, list[bytes]]]
    before_backup: str  # a time before the backup ended
    between: str  # after batch B committed, before batch C
    after_all: str  # after the last transaction and the last shipped file

    def restore(self, target: str | None, logs: list[tuple[str, list[bytes]]] | None = None,
                backup: list[bytes] | None = None) -> Restore:
        return Restore(backup=self.backup if backup is None else backup, meta=self.meta,
                       logs=self.logs if logs is None else logs, target=target,
                       service=self.ctx.service, admin=self.ctx.admin)


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    """A node with batch A in its backup, B archived before a recorded time, C after.
    It allows more connections than the nano nodes restored from it."""
    with running_node(ENGINE) as node:
        node.restart(parameters={"max_connections": 120})
        _sql(node, "CREATE TABLE items (batch text, n int)")
        _insert(node, "A")
        before_backup = _now()
        backup, meta = take_backup(node)
        _insert(node, "B")
        ENGINE.rotate_log(node.ctx, node.ca_file)  # B and C in different WAL files
        time.sleep(1.1)
        between = _now()
        time.sleep(1.1)
        _insert(node, "C")
        logs = ship_logs(node)
        after_all = _now()
        yield Source(node.ctx, backup, meta, logs, before_backup, between, after_all)


def test_backup_meta_and_shipped_logs(source: Source) -> None:
    meta = source.meta
    assert meta["format"] == "pg_basebackup-tar"
    assert meta["version"] == ENGINE.installed_versions()[0]
    assert meta["timeline"] == "1" and meta["start_wal"] <= meta["stop_wal"]
    assert meta["max_connections"] == "120"  # what a restored hot standby needs
    end = datetime.fromisoformat(meta["end_time"])
    assert datetime.fromisoformat(source.before_backup) < end < datetime.fromisoformat(
        source.between)
    names = [name for name, _ in source.logs]
    assert names == sorted(names) and not [n for n in names if n.endswith(".tmp")]
    assert any(n.endswith(".backup") for n in names)  # the backup's history file
    assert meta["stop_wal"] in names  # the segment the backup ended in was archived


def test_closed_logs_skip_copies_in_progress(source: Source) -> None:
    class Dir:
        def list_dir(self, path: PurePosixPath) -> list[str]:
            assert path == PurePosixPath("archive")
            return ["000000010000000000000004.tmp", "000000010000000000000003",
                    "00000002.history", "000000020000000000000004", "notes.txt"]

    assert [p.name for p in ENGINE.closed_logs(Dir())] == [  # type: ignore[arg-type]
        "000000010000000000000003", "00000002.history", "000000020000000000000004"]


def test_restore_to_a_point_in_time(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(source.between)) as node:
        assert _batches(node) == ["A", "B"]
        _insert(node, "D")  # promoted: writable
        assert _batches(node) == ["A", "B", "D"]
        runner = node.provider.runner(node.ctx.node_id)
        assert not runner.exists(PurePosixPath("recovery"))
        # The restored node archives its own WAL, on a new timeline.
        shipped = [name for name, _ in ship_logs(node)]
        assert "00000002.history" in shipped
        assert any(n.startswith("00000002") and len(n) == 24 for n in shipped)


def test_restore_to_the_end_of_the_logs(source: Source) -> None:
    # The logs need not repeat what the backup holds.
    later = [(n, d) for n, d in source.logs if n > source.meta["stop_wal"]]
    with running_node(ENGINE, restore=source.restore(None, logs=later)) as node:
        assert _batches(node) == ["A", "B", "C"]
        # Replay (as a hot standby) needed the source's limit; the node's own is back
        # after a restart.
        assert _sql(node, "SHOW max_connections") == [("120",)]
        node.restart()
        assert _sql(node, "SHOW max_connections") == [("50",)]
        assert _batches(node) == ["A", "B", "C"]


def test_target_after_the_last_transaction_restores_everything(source: Source) -> None:
    # No transaction ends after the target, so PostgreSQL could not stop there:
    # the restore replays to the end of the logs, which is the state at the target.
    with running_node(ENGINE, restore=source.restore(source.after_all)) as node:
        assert _batches(node) == ["A", "B", "C"]


def test_backup_alone(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(None, logs=[])) as node:
        assert _batches(node) == ["A"]
        assert _sql(node, "SELECT count(*) FROM items") == [(1000,)]


def test_target_before_the_backup_ended_is_refused(source: Source) -> None:
    started = time.monotonic()
    with (pytest.raises(ValueError, match="before the end of the backup"),
          running_node(ENGINE, restore=source.restore(source.before_backup))):
        pass
    assert time.monotonic() - started < 10


def test_missing_wal_file_is_refused(source: Source) -> None:
    after_backup = [n for n, _ in source.logs if len(n) == 24 and n > source.meta["stop_wal"]]
    gap = [log for log in source.logs if log[0] != after_backup[0]]
    with (pytest.raises(ValueError, match="WAL is missing"),
          running_node(ENGINE, restore=source.restore(None, logs=gap))):
        pass


def test_bad_log_names_are_refused(source: Source) -> None:
    with (pytest.raises(ValueError, match="not a WAL file name"),
          running_node(ENGINE, restore=source.restore(None, logs=[("../data/x", [b"x"])]))):
        pass


def _cut_before_manifest(backup: list[bytes]) -> list[bytes]:
    """The stream up to the manifest, the last member: a cut at a member boundary,
    which tar alone does not notice."""
    data = b"".join(backup)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        offset = tar.getmember("backup_manifest").offset
    return [data[:offset]]


@pytest.mark.parametrize("cut", ["last chunk", "at a member boundary"])
def test_cut_short_backup_fails(source: Source, cut: str) -> None:
    backup = source.backup[:-1] if cut == "last chunk" else _cut_before_manifest(source.backup)
    with (pytest.raises(RuntimeError, match=r"tar|pg_verifybackup"),
          running_node(ENGINE, restore=source.restore(None, backup=backup))):
        pass


def test_failed_recovery_is_reported(source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    # The WAL after the backup is unreadable: replay ends before the target and the
    # server gives up, maybe before it ever answers, so the harness must not wait.
    monkeypatch.setattr(engine_harness, "wait_healthy", lambda node, timeout=60: None)
    stop = source.meta["stop_wal"]
    logs = [(name, [bytes(16 << 20)] if len(name) == 24 and name > stop else data)
            for name, data in source.logs]
    assert logs != source.logs
    started = time.monotonic()
    with (pytest.raises(RuntimeError, match="recovery ended before configured recovery target"),
          running_node(ENGINE, restore=source.restore(source.between, logs=logs))):
        pass
    assert time.monotonic() - started < 30


def test_restored_node_keeps_the_source_accounts(source: Source) -> None:
    with running_node(ENGINE, restore=source.restore(None, logs=[])) as node:
        assert node.ctx.admin == source.ctx.admin
        assert _sql(node, "SELECT current_user") == [(source.ctx.admin.user,)]
        wrong = replace(source.ctx.admin, password="not-the-password-123")
        with pytest.raises(psycopg.OperationalError):
            _sql(node, "SELECT 1", creds=wrong)
