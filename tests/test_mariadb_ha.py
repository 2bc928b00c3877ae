"""MariaDB clusters on Galera at engine level, against real servers: forming (SST
to empty joiners), multi-primary writes, the endpoint's role check, switchover,
kill -9 of the member taking writes under a writer (no acknowledged write lost),
rejoin by IST, a full-cluster stop and start, removal and detach.

The tests share one three-member cluster and run in order (forming it costs
two state transfers, each with the SST script's fixed 10 s pause)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql
import pytest

from hoard.engines.base import NodeContext
from hoard.engines.mariadb import MariaDB
from hoard.engines.mariadb.ha import GALERA, _cluster_name
from tests.conftest import free_port
from tests.ha_harness import HaCluster, running_cluster

ENGINE = MariaDB()
pytestmark = pytest.mark.skipif(not ENGINE.installed_versions() or not Path(GALERA).exists(),
                                reason="MariaDB or Galera is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[HaCluster]:
    with running_cluster(ENGINE, nodes=3, durability="sync") as running:
        yield running


def _connect(cluster: HaCluster, ctx: NodeContext, port: int | None = None,
             service: bool = False, **kwargs: Any) -> pymysql.Connection:
    """The tenant's admin (or Hoard's service account) on one member, or on the
    endpoint's ``port``, TLS verified."""
    creds = ctx.service if service else ctx.admin
    return pymysql.connect(host=ctx.host, port=port or ctx.port, user=creds.user,
                           password=creds.password, database="app",
                           ssl_ca=cluster.ca_file, ssl_verify_identity=True,
                           autocommit=True, connect_timeout=2, **kwargs)


def _query(conn: pymysql.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def _read(cluster: HaCluster, ctx: NodeContext, sql: str) -> list[tuple[Any, ...]]:
    """A read that first waits until the member applied every write-set it was
    delivered (wsrep_sync_wait): what it shows is what the cluster committed."""
    with _connect(cluster, ctx) as conn:
        _query(conn, "SET SESSION wsrep_sync_wait = 1")
        return _query(conn, sql)


def _status(cluster: HaCluster, ctx: NodeContext, name: str) -> str:
    with _connect(cluster, ctx) as conn:
        return str(_query(conn, "SHOW GLOBAL STATUS LIKE %s", name)[0][1])


def _check(cluster: HaCluster, host: str, port: int) -> subprocess.CompletedProcess[str]:
    """The endpoint's role check, run as HAProxy would."""
    check = ENGINE.role_check(cluster.topo, cluster.ctxs[0].service, cluster.ca_file)
    fill = {"{host}": host, "{port}": str(port)}
    return subprocess.run([fill.get(a, a) for a in check.argv], capture_output=True,
                          text=True, timeout=10, env={**os.environ, **dict(check.env)},
                          check=False)


def _one_component(cluster: HaCluster) -> bool:
    """Every member Synced in the same primary component of all of them: no split."""
    states = cluster.states()
    if not all(s.role == "primary" and s.healthy for s in states):
        return False
    ids = {_status(cluster, c, "wsrep_cluster_state_uuid") for c in cluster.ctxs}
    sizes = {_status(cluster, c, "wsrep_cluster_size") for c in cluster.ctxs}
    return len(ids) == 1 and sizes == {str(len(cluster.ctxs))}


def test_cluster_forms_and_every_member_takes_writes(cluster: HaCluster) -> None:
    states = cluster.states()
    assert [s.node_id for s in states] == [c.node_id for c in cluster.ctxs]
    for state in states:
        assert (state.role, state.healthy, state.lag_bytes) == ("primary", True, None), state
        assert "Synced" in state.detail and "receive queue" in state.detail
    with _connect(cluster, cluster.ctxs[0]) as conn:
        _query(conn, "CREATE TABLE kv (k VARCHAR(20) PRIMARY KEY, v VARCHAR(20))")
    for i, ctx in enumerate(cluster.ctxs):  # multi-primary: a write on each member
        with _connect(cluster, ctx) as conn:
            _query(conn, "INSERT INTO kv VALUES (%s, %s)", f"k{i}", ctx.node_id)
    for ctx in cluster.ctxs:
        assert len(_read(cluster, ctx, "SELECT * FROM kv")) == len(cluster.ctxs)
    for ctx in cluster.ctxs:
        with _connect(cluster, ctx) as conn:
            options = _query(conn, "SELECT @@wsrep_provider_options")[0][0]
            assert "socket.ssl = YES" in options  # group traffic and IST over TLS
            # Binary logs stay on, with the peers' writes in them, for archiving.
            assert _query(conn, "SELECT @@log_bin, @@log_slave_updates, @@binlog_format") \
                == [(1, 1, "ROW")]
            assert _query(conn, "SHOW STATUS LIKE 'Ssl_version'")[0][1].startswith("TLS")
            # The tenant cannot read the SST password, or take its writes out of
            # replication.
            assert _query(conn, "SELECT @@wsrep_sst_auth") == [("********",)]
            with pytest.raises(pymysql.OperationalError, match="SUPER"):
                _query(conn, "SET SESSION wsrep_on = OFF")


def test_backups_and_binlog_archiving_work_on_any_member(cluster: HaCluster) -> None:
    ctx = cluster.ctxs[1]
    runner = cluster.provider.runner(ctx.node_id)
    ENGINE.rotate_log(ctx, cluster.ca_file)
    closed = ENGINE.closed_logs(runner)
    assert closed
    with _connect(cluster, ctx, service=True) as conn:  # it logged the others' writes too
        events = _query(conn, f"SHOW BINLOG EVENTS IN '{closed[-1].name}'")
    assert any(e[2] == "Table_map" and "(app.kv)" in e[5] for e in events)
    meta: dict[str, str] = {}
    assert sum(len(c) for c in ENGINE.backup(ctx, cluster.ca_file, runner, meta)) > 0
    assert meta["binlog_file"].startswith("binlog.")


def test_configuration_rules(cluster: HaCluster) -> None:
    assert ENGINE.durabilities == ("sync",)
    # Galera's group name has room for 32 bytes: a UUID cluster id fits undashed.
    assert _cluster_name("01a2091b-236e-7287-9d5d-163bcca7a8dd") == \
        "01a2091b236e72879d5d163bcca7a8dd"
    assert len(_cluster_name("x" * 40)) == 32
    ctx = cluster.ctxs[0]
    with pytest.raises(ValueError, match="synchronously"):
        ENGINE.configure_member(ctx, replace(cluster.topo, durability="async"),
                                cluster.provider.runner(ctx.node_id))


def test_role_check_passes_only_synced_members(cluster: HaCluster) -> None:
    for ctx in cluster.ctxs:
        result = _check(cluster, ctx.host, ctx.port)
        assert result.returncode == 0, result.stderr
    assert _check(cluster, "127.0.0.1", free_port()).returncode != 0
    ctx = cluster.ctxs[1]
    with _connect(cluster, ctx, service=True) as conn:  # no longer Synced: it fails
        _query(conn, "SET GLOBAL wsrep_desync = ON")
        try:
            result = _check(cluster, ctx.host, ctx.port)
            assert result.returncode != 0 and "not a synced primary member" in result.stderr
            state = cluster.states()[1]
            assert (state.role, state.healthy) == ("", False), state
            assert "Desynced" in state.detail
        finally:
            _query(conn, "SET GLOBAL wsrep_desync = OFF")
    cluster.wait_formed(30)


def test_switchover_checks_the_target_takes_writes(cluster: HaCluster) -> None:
    target = cluster.ctxs[2]
    ENGINE.switchover(cluster.ctxs, cluster.topo, cluster.ca_file, target.node_id)
    with _connect(cluster, target) as conn:
        _query(conn, "INSERT INTO kv VALUES ('switched', %s)", target.node_id)


class Writer(threading.Thread):
    """Inserts increasing ids through the endpoint, reconnecting on any error,
    and records each one the server acknowledged and when."""

    def __init__(self, cluster: HaCluster, port: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.port = cluster, port
        self.acked: list[tuple[int, float, str]] = []  # (id, when, member)
        self.stopping = threading.Event()

    def run(self) -> None:
        conn, member, next_id = None, "", 0
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = _connect(self.cluster, self.cluster.ctxs[0], self.port,
                                    read_timeout=5, write_timeout=5)
                    member = _query(conn, "SELECT @@wsrep_node_name")[0][0]
                next_id += 1
                _query(conn, "INSERT INTO failover VALUES (%s)", next_id)
                self.acked.append((next_id, time.monotonic(), member))
            except (pymysql.MySQLError, OSError):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)


def test_kill_the_writing_member_loses_no_acknowledged_write(cluster: HaCluster) -> None:
    _, rw_port, _ = cluster.endpoint()
    with _connect(cluster, cluster.ctxs[0]) as conn:
        _query(conn, "CREATE TABLE failover (id INT PRIMARY KEY)")
    writer = Writer(cluster, rw_port)
    writer.start()
    try:
        cluster.wait_for(lambda: len(writer.acked) > 20, 30, "writes through the endpoint")
        victim = writer.acked[-1][2]  # the member the endpoint sends writes to
        killed_at = time.monotonic()
        cluster.kill(victim)
        cluster.wait_for(lambda: writer.acked[-1][1] > killed_at, 30, "a write after the kill")
        resumed = writer.acked[-1][1] - killed_at
        cluster.wait_for(lambda: len([a for a in writer.acked if a[1] > killed_at]) > 20, 30,
                         "writes after the kill")
    finally:
        writer.stopping.set()
        writer.join(10)
    print(f"writes resumed {resumed:.1f} s after kill -9 of {victim}")
    assert resumed < 10
    assert {a[2] for a in writer.acked if a[1] > killed_at + resumed} != {victim}
    acked = {a[0] for a in writer.acked}
    survivors = [c for c in cluster.ctxs if c.node_id != victim]
    for ctx in survivors:  # "sync": every acknowledged write is on every survivor
        rows = {r[0] for r in _read(cluster, ctx, "SELECT id FROM failover")}
        assert acked <= rows, f"lost on {ctx.node_id}: {sorted(acked - rows)[:10]}"
    states = {s.node_id: s for s in cluster.states()}
    assert not states[victim].healthy
    assert all(states[c.node_id].role == "primary" for c in survivors)
    assert _status(cluster, survivors[0], "wsrep_cluster_size") == "2"

    started = time.monotonic()
    cluster.restart(victim)  # as the observer would: it rejoins and catches up (IST)
    cluster.wait_for(lambda: _one_component(cluster), 60, "the killed member rejoined")
    print(f"rejoined in {time.monotonic() - started:.1f} s")
    rows = {r[0] for r in _read(cluster, cluster.ctx(victim), "SELECT id FROM failover")}
    assert acked <= rows
    log = Path(cluster.provider.runner(victim).abspath(Path("log/server.log"))).read_text()
    assert "IST received" in log.rsplit("Starting MariaDB", 1)[-1]  # no full SST


def test_whole_cluster_stopped_and_started_comes_back(cluster: HaCluster) -> None:
    for ctx in cluster.ctxs:  # one by one: the last to leave may bootstrap again
        cluster.provider.stop(ctx.node_id)
    for ctx in cluster.ctxs:  # in any order
        cluster.restart(ctx.node_id)
    cluster.wait_for(lambda: _one_component(cluster), 90, "the cluster is back")
    assert len(_read(cluster, cluster.ctxs[0], "SELECT * FROM kv")) == len(cluster.ctxs) + 1


def test_whole_cluster_killed_comes_back(cluster: HaCluster) -> None:
    """Every member crashed: none may bootstrap alone, and Galera's pc.recovery
    restores the last primary component once all its members are back."""
    for ctx in cluster.ctxs:
        cluster.kill(ctx.node_id)
    for ctx in cluster.ctxs:
        cluster.restart(ctx.node_id)
    cluster.wait_for(lambda: _one_component(cluster), 90, "the cluster is back")
    with _connect(cluster, cluster.ctxs[1]) as conn:
        _query(conn, "INSERT INTO kv VALUES ('after-crash', 'x')")


def test_remove_member_then_detach_it(cluster: HaCluster) -> None:
    leaving = cluster.ctxs[2]
    ENGINE.remove_member(cluster.ctxs, cluster.topo, cluster.ca_file, leaving.node_id)
    cluster.provider.stop(leaving.node_id)
    cluster.topo = replace(cluster.topo, members=cluster.topo.members[:2])
    cluster.ctxs = cluster.ctxs[:2]
    for ctx in cluster.ctxs:
        ENGINE.configure_member(ctx, cluster.topo, cluster.provider.runner(ctx.node_id))
    assert _one_component(cluster)  # a graceful leave: the two keep the primary component
    with _connect(cluster, cluster.ctxs[0]) as conn:
        _query(conn, "INSERT INTO kv VALUES ('after-remove', 'x')")

    runner = cluster.provider.runner(leaving.node_id)
    ENGINE.detach(leaving, runner)
    ENGINE.configure(leaving, runner)
    cluster.provider.start_process(leaving.node_id, ENGINE.process(leaving, runner))
    cluster.wait_for(lambda: ENGINE.health(leaving, cluster.ca_file, 2).ok, 60, "standalone up")
    with _connect(cluster, leaving) as conn:
        assert _query(conn, "SELECT @@wsrep_on, @@log_bin") == [(0, 1)]
        assert ("after-crash", "x") in _query(conn, "SELECT * FROM kv")
        assert ("after-remove", "x") not in _query(conn, "SELECT * FROM kv")
        _query(conn, "INSERT INTO kv VALUES ('standalone', 'x')")
    assert ("standalone", "x") not in _read(cluster, cluster.ctxs[0], "SELECT * FROM kv")
    cluster.provider.stop(leaving.node_id)

    # Two members to one: the leaving member is out before its process is killed
    # (as destroying a node does), so the last one keeps serving.
    leaving = cluster.ctxs[1]
    ENGINE.remove_member(cluster.ctxs, cluster.topo, cluster.ca_file, leaving.node_id)
    cluster.kill(leaving.node_id)
    cluster.topo = replace(cluster.topo, members=cluster.topo.members[:1])
    cluster.ctxs = cluster.ctxs[:1]
    time.sleep(3)  # longer than Galera takes to suspect a silent member
    assert _one_component(cluster)
    with _connect(cluster, cluster.ctxs[0]) as conn:
        _query(conn, "INSERT INTO kv VALUES ('alone', 'x')")
