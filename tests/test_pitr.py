"""Point-in-time restores are exact or refused: a restore to T holds exactly the
transactions committed at or before T (each test asserts the whole row set),
and a T the shipped logs do not cover yet is refused with the latest time that
is. Real servers, real WAL and binlogs, through the API."""

from __future__ import annotations

import datetime as dt
import glob
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pymysql
import pytest

from hoard.engines.mariadb.binlog import (
    MAGIC,
    last_transaction,
    split_second,
    stop_datetime,
    transaction_times,
)
from tests.conftest import HoardServer, create_cluster, delete_cluster, hoard_server, wait_operation

# Logs ship every second and rotate every two: the backup's own files are often
# shipped after the first targets below, which is what used to cut restores short.
TIMING = {"HOARD_ARCHIVE_INTERVAL": "1", "HOARD_ARCHIVE_ROTATE_SECONDS": "2"}
XACT = re.compile(r"tx: +(\d+), .*desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC")


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server(TIMING) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: HoardServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _credentials(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    answer = client.get(f"/v2/clusters/{cluster_id}/credentials")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class Sql:
    """One engine's client for a cluster: numbered rows in table t, each inserted
    in a transaction of its own."""

    def __init__(self, engine: str, creds: dict[str, Any], ca: str) -> None:
        self.engine, self.creds, self.ca = engine, creds, ca

    def _connect(self) -> Any:
        c = self.creds
        if self.engine == "postgresql":
            return psycopg.connect(host=c["host"], port=c["port"], user=c["username"],
                                   password=c["password"], dbname="app", sslmode="verify-full",
                                   sslrootcert=self.ca, autocommit=True, connect_timeout=10)
        return pymysql.connect(host=c["host"], port=c["port"], user=c["username"],
                               password=c["password"], database="app", ssl_ca=self.ca,
                               ssl_verify_identity=True, autocommit=True, connect_timeout=10)

    def execute(self, *statements: str) -> None:
        with self._connect() as conn:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)

    def insert(self, first: int, last: int, pause: float = 0.0) -> None:
        """Rows first..last, one transaction each, ``pause`` seconds apart."""
        with self._connect() as conn:
            cur = conn.cursor()
            for k in range(first, last + 1):
                if self.engine == "postgresql":
                    cur.execute("INSERT INTO t (k, xid) VALUES (%s, txid_current())", (k,))
                else:
                    cur.execute("INSERT INTO t (k) VALUES (%s)", (k,))
                time.sleep(pause)

    def rows(self) -> set[int]:
        with self._connect() as conn:
            cur = conn.cursor()
            cur.execute("SELECT k FROM t")
            return {int(row[0]) for row in cur.fetchall()}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _backup(client: httpx.Client, cluster_id: str) -> None:
    answer = client.post(f"/v2/clusters/{cluster_id}/backups")
    assert answer.status_code == 202, answer.text
    op = wait_operation(client, answer.json()["operation"]["id"])
    assert op["status"] == "succeeded", op["error"]


def _window(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    answer = client.get("/v2/backups", params={"cluster_id": cluster_id})
    return dict(answer.json()["restorable"] or {})


def _wait_covered(client: httpx.Client, cluster_id: str, when: dt.datetime) -> None:
    deadline = time.monotonic() + 60
    while not (_window(client, cluster_id)
               and dt.datetime.fromisoformat(_window(client, cluster_id)["latest"]) >= when):
        assert time.monotonic() < deadline, _window(client, cluster_id)
        time.sleep(0.2)


def _restore(client: httpx.Client, engine: str, name: str, cluster_id: str,
             when: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a restore to ``when`` and wait for it: (operation, cluster)."""
    answer = client.post("/v2/clusters", json={
        "name": name, "engine": engine, "size": "nano",
        "restore": {"cluster_id": cluster_id, "time": when.isoformat()}})
    assert answer.status_code == 202, answer.text
    op = wait_operation(client, answer.json()["operation"]["id"], timeout=300)
    return op, dict(client.get(f"/v2/clusters/{answer.json()['cluster']['id']}").json())


def _restored_rows(client: httpx.Client, server: HoardServer, engine: str, name: str,
                   cluster_id: str, when: dt.datetime) -> set[int]:
    op, copy = _restore(client, engine, name, cluster_id, when)
    try:
        assert op["status"] == "succeeded", (op["error"], op["steps"])
        return Sql(engine, _credentials(client, copy["id"]), _ca(server)).rows()
    finally:
        delete_cluster(client, copy["id"])


def _ca(server: HoardServer) -> str:
    return str(server.state_dir / "ca" / "ca.pem")


def _pg_commit_times(server: HoardServer, node_id: str) -> dict[int, dt.datetime]:
    """Commit time of each transaction id, read from the node's own WAL."""
    times: dict[int, dt.datetime] = {}
    wal = server.state_dir / "nodes" / node_id / "data" / "pg_wal"
    for segment in sorted(glob.glob(str(wal / ("[0-9A-F]" * 24)))):
        out = subprocess.run(
            ["/usr/lib/postgresql/15/bin/pg_waldump", "--path", str(wal), "--rmgr=Transaction",
             segment.rsplit("/", 1)[1]], capture_output=True, text=True, env={"TZ": "UTC"},
            check=False).stdout
        for xid, stamp in XACT.findall(out):
            times[int(xid)] = dt.datetime.fromisoformat(stamp + "+00:00")
    return times


def test_postgresql_restores_exactly_to_any_time(client: httpx.Client,
                                                 server: HoardServer) -> None:
    source = create_cluster(client, "pitr-pg", engine="postgresql")
    sql = Sql("postgresql", _credentials(client, source["id"]), _ca(server))
    try:
        sql.execute("CREATE TABLE t (k int PRIMARY KEY, xid bigint)")
        sql.execute("INSERT INTO t (k) SELECT g FROM generate_series(1, 1000) g")
        _backup(client, source["id"])
        # Committed between the backup and T (the case that used to come back empty).
        sql.execute("INSERT INTO t (k) SELECT g FROM generate_series(1001, 1200) g")
        time.sleep(0.3)
        first = _now()
        time.sleep(0.3)
        sql.execute("INSERT INTO t (k) SELECT g FROM generate_series(1201, 1500) g")
        # Ten transactions a few milliseconds apart.
        sql.insert(2001, 2010, pause=0.004)
        last = _now()
        with psycopg.connect(host=sql.creds["host"], port=sql.creds["port"],
                             user=sql.creds["username"], password=sql.creds["password"],
                             dbname="app", sslmode="verify-full", sslrootcert=_ca(server)) as c:
            xids = dict(c.execute("SELECT k, xid FROM t WHERE k > 2000").fetchall())
        commits = _pg_commit_times(server, source["members"][0]["id"])
        at = {k: commits[xid] for k, xid in xids.items()}
        assert sorted(at.values()) == [at[k] for k in sorted(at)]

        # T in the newest log, not yet closed and shipped: refused, saying until when.
        refused = client.post("/v2/clusters", json={
            "name": "too-soon", "engine": "postgresql", "size": "nano",
            "restore": {"cluster_id": source["id"], "time": last.isoformat()}})
        assert refused.status_code == 422, refused.text
        assert "not been shipped yet" in refused.json()["detail"]
        assert "latest restorable time" in refused.json()["detail"]

        # Started as soon as the window covers T.
        _wait_covered(client, source["id"], first)
        rows = _restored_rows(client, server, "postgresql", "pitr-pg-1", source["id"], first)
        assert rows == set(range(1, 1201))

        _wait_covered(client, source["id"], last)
        # T exactly at a commit: that transaction is in.
        rows = _restored_rows(client, server, "postgresql", "pitr-pg-2", source["id"], at[2004])
        assert rows == set(range(1, 1501)) | set(range(2001, 2005))
        # More logs rotated and shipped since; T between two commits milliseconds apart.
        sql.insert(3001, 3003)
        time.sleep(4.5)
        between = at[2007] + (at[2008] - at[2007]) / 2
        assert at[2007] < between < at[2008]
        rows = _restored_rows(client, server, "postgresql", "pitr-pg-3", source["id"], between)
        assert rows == set(range(1, 1501)) | set(range(2001, 2008))
    finally:
        delete_cluster(client, source["id"])


def _next_second(offset: float) -> None:
    """Sleep until ``offset`` seconds past the next whole second."""
    now = time.time()
    time.sleep(int(now) + 1 + offset - now)


def test_mariadb_restores_exactly_or_says_which_second_is_ambiguous(
        client: httpx.Client, server: HoardServer) -> None:
    source = create_cluster(client, "pitr-maria", engine="mariadb")
    sql = Sql("mariadb", _credentials(client, source["id"]), _ca(server))
    try:
        sql.execute("CREATE TABLE t (k int PRIMARY KEY)",
                    "INSERT INTO t SELECT seq FROM seq_1_to_1000")
        _backup(client, source["id"])
        _next_second(0.2)
        sql.execute("INSERT INTO t SELECT seq FROM seq_1001_to_1200")  # between backup and T
        _next_second(0.5)
        quiet = _now()  # a second in which nothing was written
        _next_second(0.1)
        busy = int(time.time())
        sql.insert(2001, 2001)
        time.sleep(0.2)
        split = _now()
        sql.insert(2002, 2002)
        assert int(time.time()) == busy, "the two rows must share a second"
        _next_second(0.5)
        sql.insert(3001, 3003)
        _wait_covered(client, source["id"], _now())

        rows = _restored_rows(client, server, "mariadb", "pitr-maria-1", source["id"], quiet)
        assert rows == set(range(1, 1201))
        # Inside a second with transactions on both sides: refused, with the two
        # nearest exact times; nothing of the attempt is left running.
        op, copy = _restore(client, "mariadb", "pitr-maria-2", source["id"], split)
        assert op["status"] == "failed"
        assert "records commit times to the second" in op["error"], op["error"]
        second = dt.datetime.fromtimestamp(busy, dt.UTC)
        after = second + dt.timedelta(seconds=1, microseconds=-1)
        assert after.isoformat() in op["error"], op["error"]
        assert copy["status"] == "FAILED"
        delete_cluster(client, copy["id"])
        rows = _restored_rows(client, server, "mariadb", "pitr-maria-3", source["id"], after)
        assert rows == set(range(1, 1201)) | {2001, 2002}
    finally:
        delete_cluster(client, source["id"])


def _event(stamp: int, kind: int, body: bytes = b"") -> bytes:
    length = 19 + len(body)
    return struct.pack("<IBIIIH", stamp, kind, 1, length, 0, 0) + body


def test_binlog_times_are_read_across_any_chunking() -> None:
    """The header walk gives the same answer however the file is cut into chunks,
    skips the file's own events, and refuses what is not a binlog."""
    data = (MAGIC + _event(100, 15, b"f" * 40) + _event(101, 162, b"g" * 5)
            + _event(101, 16, b"x" * 8) + _event(103, 2, b"q" * 300) + _event(104, 4, b"r"))
    for size in (1, 3, 19, 20, 64, len(data)):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        assert list(transaction_times(chunks)) == [101, 101, 103]
        assert last_transaction(iter(chunks)) == dt.datetime.fromtimestamp(103, dt.UTC)
    start = 4 + 19 + 40 + 19 + 5  # from the third event on
    assert list(transaction_times([data], start)) == [101, 103]
    second = dt.datetime.fromtimestamp(101, dt.UTC)
    assert split_second([[data]], 4, second.replace(microsecond=500_000)) == 2
    assert split_second([[data]], 4, second + dt.timedelta(seconds=1)) == 0
    assert stop_datetime(second.replace(microsecond=999_999)) == "1970-01-01 00:01:42"
    with pytest.raises(ValueError, match="not a binary log"):
        list(transaction_times([b"GIF89a" + data]))


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_replicated_clusters_restore_exactly(client: httpx.Client, server: HoardServer,
                                             engine: str) -> None:
    """The primary ships the logs of a replicated cluster; a restore to T between
    transactions written after the backup has exactly those before T."""
    source = create_cluster(client, f"pitr-ha-{engine}", engine=engine, nodes=2)
    sql = Sql(engine, _credentials(client, source["id"]), _ca(server))
    try:
        sql.execute("CREATE TABLE t (k int PRIMARY KEY, xid bigint)")
        sql.insert(1, 5)
        _backup(client, source["id"])
        _next_second(0.2)
        sql.insert(6, 10)
        _next_second(0.5)
        when = _now()  # a second without transactions, which MariaDB needs
        _next_second(0.2)
        sql.insert(11, 15)
        _wait_covered(client, source["id"], _now())
        rows = _restored_rows(client, server, engine, f"pitr-ha-copy-{engine}", source["id"],
                              when)
        assert rows == set(range(1, 11))
    finally:
        delete_cluster(client, source["id"])
