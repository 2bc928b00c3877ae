"""The MariaDB engine on its own: settings, TLS, the admin's limits, accounts,
live and restart-only parameters, and the node's memory limit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pytest

from hoard.domain.catalog import SIZES, Size
from hoard.engines.base import Credentials, Health, NodeContext, ParamValue
from hoard.engines.mariadb import MariaDB
from hoard.providers import cgroups
from hoard.security.ca import CertificateAuthority
from tests.conftest import free_port
from tests.engine_harness import RunningNode, running_node

ENGINE = MariaDB()
pytestmark = pytest.mark.skipif(not ENGINE.installed_versions(), reason="MariaDB is not installed")
FIRST_PID: dict[str, int | None] = {}


@pytest.fixture(scope="module")
def node() -> Iterator[RunningNode]:
    with running_node(ENGINE) as running:
        FIRST_PID[running.ctx.node_id] = running.provider.pid(running.ctx.node_id)
        yield running


def _ctx(size: Size, **parameters: Any) -> NodeContext:
    return NodeContext("n", "10.11", size, "127.0.0.1", 1, Credentials("a", "b"),
                       Credentials("c", "d"), parameters)


def _connect(node: RunningNode, user: str, password: str, database: str | None = "app",
             **kwargs: Any) -> pymysql.Connection:
    options: dict[str, Any] = {"ssl_ca": node.ca_file, "ssl_verify_identity": True, **kwargs}
    return pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=user,
                           password=password, database=database, connect_timeout=5,
                           autocommit=True, **options)


def _admin(node: RunningNode) -> pymysql.Connection:
    return _connect(node, node.ctx.admin.user, node.ctx.admin.password)


def _service(node: RunningNode) -> pymysql.Connection:
    return _connect(node, node.ctx.service.user, node.ctx.service.password, None)


def _query(conn: pymysql.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def _variable(node: RunningNode, name: str) -> str:
    with _service(node) as conn:
        return str(_query(conn, "SHOW GLOBAL VARIABLES LIKE %s", name)[0][1])


def test_size_derives_settings() -> None:
    nano, large = ENGINE.settings(_ctx(SIZES["nano"])), ENGINE.settings(_ctx(SIZES["large"]))
    assert nano["innodb_buffer_pool_size"] == "128M"
    assert large["innodb_buffer_pool_size"] == "9770M"  # 60% of what the P_S leaves
    assert nano["performance_schema"] == "OFF" and large["performance_schema"] == "ON"
    assert int(nano["max_connections"]) < int(large["max_connections"])
    tuned = ENGINE.settings(_ctx(SIZES["nano"], innodb_buffer_pool_size=96, tmp_table_size=8,
                                 slow_query_log=True, innodb_flush_log_at_trx_commit="2"))
    assert tuned["innodb_buffer_pool_size"] == "96M" and tuned["slow_query_log"] == "ON"
    assert tuned["tmp_table_size"] == tuned["max_heap_table_size"] == "8M"
    assert tuned["innodb_flush_log_at_trx_commit"] == "2"
    # The Performance Schema's ~100 MB come out of the derived buffer pool.
    with_pfs = ENGINE.settings(_ctx(SIZES["nano"], performance_schema=True))
    assert with_pfs["performance_schema"] == "ON"
    assert with_pfs["innodb_buffer_pool_size"] == "78M"
    assert ENGINE.is_dynamic("innodb_buffer_pool_size") and ENGINE.is_dynamic("max_connections")
    assert not ENGINE.is_dynamic("performance_schema")
    assert not ENGINE.is_dynamic("aria_pagecache_buffer_size")
    params = ENGINE.parameters()
    assert any(p.dynamic for p in params) and any(not p.dynamic for p in params)


def test_admin_connects_with_the_uri_over_tls(node: RunningNode) -> None:
    ctx = node.ctx
    uri = urlsplit(ENGINE.connection_uri(ctx.host, ctx.port, ctx.admin, node.ca_file))
    query = parse_qs(uri.query)
    assert uri.scheme == "mysql" and query["ssl_ca"] == [node.ca_file]
    assert uri.hostname and uri.port and uri.username and uri.password
    with pymysql.connect(host=uri.hostname, port=uri.port, user=unquote(uri.username),
                         password=unquote(uri.password), database=uri.path.lstrip("/"),
                         ssl_ca=query["ssl_ca"][0], ssl_verify_identity=True,
                         autocommit=True) as conn:
        _query(conn, "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100))")
        _query(conn, "INSERT INTO notes VALUES (1, %s)", "héllo ✓")
        assert _query(conn, "SELECT body FROM notes") == [("héllo ✓",)]
        version = _query(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")[0][1]
        assert version in ("TLSv1.2", "TLSv1.3")


def test_health_verifies_the_server(node: RunningNode, tmp_path: Path) -> None:
    assert ENGINE.health(node.ctx, node.ca_file) == Health(True,
                                                           "accepting connections as primary")
    other_ca = str(CertificateAuthority(tmp_path / "other-ca").cert_path)
    assert not ENGINE.health(node.ctx, other_ca, timeout=2).ok
    assert not ENGINE.health(replace(node.ctx, port=free_port()), node.ca_file, timeout=1).ok
    wrong = replace(node.ctx, service=Credentials(node.ctx.service.user, "not-the-password"))
    assert not ENGINE.health(wrong, node.ca_file, timeout=2).ok


def test_client_command_connects(node: RunningNode) -> None:
    ctx = node.ctx
    command = ENGINE.client_command(ctx.host, ctx.port, ctx.admin, node.ca_file)
    assert ctx.admin.password not in command.argv
    done = subprocess.run([*command.argv, "--batch", "-e", "SELECT DATABASE()"],
                          env={**os.environ, **command.env}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DATABASE()", "app"]


def test_plaintext_is_refused(node: RunningNode) -> None:
    for creds in (node.ctx.admin, node.ctx.service):
        with pytest.raises(pymysql.MySQLError):
            pymysql.connect(host=node.ctx.host, port=node.ctx.port, user=creds.user,
                            password=creds.password, ssl_disabled=True, connect_timeout=5)


def test_only_hoards_accounts_exist(node: RunningNode) -> None:
    with pytest.raises(pymysql.MySQLError):
        _connect(node, "root", "", None)
    with _service(node) as conn:
        accounts = set(_query(conn, "SELECT User, Host FROM mysql.user"))
    assert accounts == {("hoard", "%"), ("admin", "%"), ("mariadb.sys", "localhost")}
    runner = node.provider.runner(node.ctx.node_id)
    assert not runner.exists(PurePosixPath("bootstrap"))  # the account SQL is gone
    assert not [p for p in runner.root.rglob("*") if p.is_socket()]  # no Unix socket


@pytest.mark.parametrize("statement", [
    "SELECT 1 INTO OUTFILE '{node_dir}/tmp/outfile'",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE notes",
    "GRANT SUPER ON *.* TO CURRENT_USER",
    "GRANT ALL PRIVILEGES ON *.* TO CURRENT_USER",
    "CREATE USER 'intruder'@'%' IDENTIFIED BY 'pw-1234567890'",
    "GRANT SELECT ON app.* TO 'hoard'@'%'",
    "SELECT * FROM mysql.global_priv",
    "INSERT INTO mysql.plugin VALUES ('connect', 'ha_connect.so')",
    "UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'hoard'",
    "CREATE TABLE mysql.trap (x INT)",
    "DROP VIEW sys.version",
    "INSTALL SONAME 'ha_connect'",
    "SET GLOBAL max_connections = 5000",
    "SHOW PROCESSLIST",
    "SHUTDOWN",
])
def test_admin_cannot_touch_the_host_or_escalate(node: RunningNode, statement: str) -> None:
    node_dir = node.provider.runner(node.ctx.node_id).root  # writable by the server
    statement = statement.replace("{node_dir}", str(node_dir))
    with _admin(node) as conn:
        if statement == "SHOW PROCESSLIST":  # allowed, but shows only its own sessions
            users = {row[1] for row in _query(conn, statement)}
            assert users == {node.ctx.admin.user}
            return
        with pytest.raises(pymysql.MySQLError):
            _query(conn, statement)
    assert not (node_dir / "tmp" / "outfile").exists()


def test_admin_manages_databases_but_holds_no_global_privilege(node: RunningNode) -> None:
    with _admin(node) as conn:
        assert _query(conn, "SELECT LOAD_FILE('/etc/passwd')") == [(None,)]
        grants = [row[0] for row in _query(conn, "SHOW GRANTS")]
        assert any(g.startswith("GRANT USAGE ON *.* TO") for g in grants), grants
        assert not any("WITH GRANT OPTION" in g for g in grants), grants
        _query(conn, "CREATE DATABASE own_db")
        outside = node.provider.runner(node.ctx.node_id).root / "tmp" / "elsewhere"
        for engine in ("InnoDB", "MyISAM", "Aria"):  # no table files outside the data dir
            _query(conn, f"CREATE TABLE own_db.{engine} (x INT) ENGINE={engine} "
                         f"DATA DIRECTORY='{outside}'")
        assert not Path(outside).exists()
        _query(conn, "CREATE TABLE own_db.t (x INT) ENGINE=InnoDB")
        _query(conn, "INSERT INTO own_db.t VALUES (1)")
        _query(conn, "DROP DATABASE own_db")


def test_database_and_user_lifecycle(node: RunningNode) -> None:
    e, ctx, ca = node.engine, node.ctx, node.ca_file
    assert isinstance(e, MariaDB)
    e.create_database(ctx, ca, "shop_1", "latin1", "latin1_general_ci")
    e.create_database(ctx, ca, "shop_1", "latin1", "latin1_general_ci")  # idempotent
    e.create_database(ctx, ca, "shopx1", None, None)
    with pytest.raises(ValueError, match="unknown collation"):
        e.create_database(ctx, ca, "bad", "utf8mb4", "no_such_collation")
    with pytest.raises(ValueError, match="character set"):
        e.create_database(ctx, ca, "bad", "utf8mb4", "latin1_general_ci")
    listed = {d.name: d for d in e.list_databases(ctx, ca)}
    assert set(listed) == {"app", "shop_1", "shopx1"}
    assert (listed["shop_1"].charset, listed["shop_1"].collation) == ("latin1",
                                                                      "latin1_general_ci")
    assert (listed["app"].charset, listed["app"].collation) == ("utf8mb4", "utf8mb4_unicode_ci")

    e.create_user(ctx, ca, "clerk", "pw-one-1234567890")
    e.create_user(ctx, ca, "clerk", "pw-one-1234567890")  # idempotent
    e.grant(ctx, ca, "clerk", "shop_1")
    e.grant(ctx, ca, "clerk", "shop_1")
    assert [(u.name, u.databases) for u in e.list_users(ctx, ca)] == [("clerk", ["shop_1"])]
    with _connect(node, "clerk", "pw-one-1234567890", "shop_1") as conn:
        _query(conn, "CREATE TABLE t (x INT)")
        _query(conn, "INSERT INTO t VALUES (1)")
        assert _query(conn, "SELECT x FROM t") == [(1,)]
        with pytest.raises(pymysql.MySQLError):  # "_" is no wildcard in the grant
            _query(conn, "CREATE TABLE shopx1.t (x INT)")
        with pytest.raises(pymysql.MySQLError):
            _query(conn, "SELECT * FROM app.notes")
    with pytest.raises(pymysql.MySQLError):  # TLS only, for tenant users too
        pymysql.connect(host=ctx.host, port=ctx.port, user="clerk",
                        password="pw-one-1234567890", ssl_disabled=True, connect_timeout=5)

    e.set_password(ctx, ca, "clerk", "pw-two-1234567890")
    with pytest.raises(pymysql.MySQLError):
        _connect(node, "clerk", "pw-one-1234567890", "shop_1")
    session = _connect(node, "clerk", "pw-two-1234567890", "shop_1")
    e.revoke(ctx, ca, "clerk", "shop_1")
    e.revoke(ctx, ca, "clerk", "shop_1")  # idempotent
    with pytest.raises(pymysql.MySQLError):  # the open session was ended
        _query(session, "SELECT x FROM t")
    session.close()
    with pytest.raises(pymysql.MySQLError):
        _connect(node, "clerk", "pw-two-1234567890", "shop_1")
    assert [(u.name, u.databases) for u in e.list_users(ctx, ca)] == [("clerk", [])]

    e.grant(ctx, ca, "clerk", "shop_1")
    e.drop_database(ctx, ca, "shop_1")  # takes its grants along
    assert [(u.name, u.databases) for u in e.list_users(ctx, ca)] == [("clerk", [])]
    e.drop_user(ctx, ca, "clerk")
    e.drop_user(ctx, ca, "clerk")  # idempotent
    e.drop_database(ctx, ca, "shopx1")
    e.drop_database(ctx, ca, "shopx1")
    assert [d.name for d in e.list_databases(ctx, ca)] == ["app"]
    assert e.list_users(ctx, ca) == []
    with pytest.raises(ValueError):
        e.drop_database(ctx, ca, "mysql")


def test_bootstrap_and_initialize_are_idempotent(node: RunningNode) -> None:
    runner = node.provider.runner(node.ctx.node_id)
    node.engine.bootstrap(node.ctx, runner)
    node.engine.initialize(node.ctx, node.ca_file)
    with _admin(node) as conn:
        assert _query(conn, "SELECT COUNT(*) FROM notes") == [(1,)]


def test_dynamic_parameters_apply_live(node: RunningNode) -> None:
    before = ENGINE.settings(node.ctx)
    ctx = replace(node.ctx, parameters={
        "max_connections": 77, "long_query_time": 3, "slow_query_log": True,
        "innodb_flush_log_at_trx_commit": "2", "tx_isolation": "READ-COMMITTED",
        "max_allowed_packet": 32, "innodb_buffer_pool_size": 96,
    })
    after = ENGINE.settings(ctx)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert all(ENGINE.is_dynamic(k) for k in changed)
    ENGINE.configure(ctx, node.provider.runner(ctx.node_id))
    ENGINE.apply_live(ctx, node.ca_file, changed)
    assert _variable(node, "max_connections") == "77"
    assert _variable(node, "long_query_time") == "3.000000"
    assert _variable(node, "slow_query_log") == "ON"
    assert _variable(node, "innodb_flush_log_at_trx_commit") == "2"
    assert _variable(node, "tx_isolation") == "READ-COMMITTED"
    assert _variable(node, "max_allowed_packet") == str(32 * 1024 * 1024)
    assert _variable(node, "innodb_buffer_pool_size") == str(96 * 1024 * 1024)
    # Dropping the configuration takes everything back to the size's defaults.
    ENGINE.configure(node.ctx, node.provider.runner(ctx.node_id))
    ENGINE.apply_live(node.ctx, node.ca_file, changed)
    assert _variable(node, "max_connections") == before["max_connections"]
    assert _variable(node, "long_query_time") == "10.000000"
    assert _variable(node, "slow_query_log") == "OFF"
    assert _variable(node, "innodb_buffer_pool_size") == str(128 * 1024 * 1024)
    with pytest.raises(ValueError):
        ENGINE.apply_live(node.ctx, node.ca_file, ["performance_schema"])
    # Values outside the schema never reach SQL, whatever called apply_live.
    rogue = replace(node.ctx, parameters={"sql_mode": "'; SHUTDOWN; --"})
    with pytest.raises(ValueError):
        ENGINE.apply_live(rogue, node.ca_file, ["sql_mode"])
    assert _variable(node, "sql_mode") == next(
        p.allowed[0] for p in ENGINE.parameters() if p.name == "sql_mode")


def _memory_cgroup(node: RunningNode) -> Path | None:
    procs = cgroups.procs_files(node.ctx.node_id)
    found = [Path(p).parent for p in procs if "/memory/" in p or "/cgroup/hoard/" in p]
    return found[0] if found else None


def _oom_kills(group: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        if (group / name).exists():
            for line in (group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0


def _load(node: RunningNode, rows: int = 40_000) -> None:
    """About 1 KB a row: more than the nano buffer pool holds once it passes 100k."""
    with _admin(node) as conn:
        _query(conn, "CREATE TABLE IF NOT EXISTS load_test (id INT PRIMARY KEY, "
                     "pad VARCHAR(1000))")
        for start in range(0, rows, 5_000):
            _query(conn, "INSERT IGNORE INTO load_test SELECT seq, REPEAT(MD5(seq), 30) "
                         f"FROM seq_{start}_to_{start + 4_999}")
        assert _query(conn, "SELECT COUNT(DISTINCT pad) FROM load_test") == [(rows,)]
        _query(conn, "SELECT pad FROM load_test ORDER BY pad DESC LIMIT 1")


def test_server_runs_within_the_memory_limit(node: RunningNode) -> None:
    _load(node, 150_000)
    sessions = [_admin(node) for _ in range(40)]
    for session in sessions:
        _query(session, "SELECT COUNT(*) FROM load_test")
        session.close()
    assert node.provider.pid(node.ctx.node_id) == FIRST_PID[node.ctx.node_id]  # not restarted
    group = _memory_cgroup(node)
    if group is None:
        pytest.skip("memory limits are not enforced on this host")
    limit_file = group / ("memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists()
                          else "memory.max")
    assert int(limit_file.read_text()) == 256 * 1024 * 1024
    assert str(node.provider.pid(node.ctx.node_id)) in (group / "cgroup.procs").read_text()
    assert _oom_kills(group) == 0


def test_restart_applies_restart_only_parameters(node: RunningNode) -> None:
    params: dict[str, ParamValue] = {"performance_schema": True,
                                     "thread_handling": "pool-of-threads"}
    ctx = replace(node.ctx, parameters=params)
    before, after = ENGINE.settings(node.ctx), ENGINE.settings(ctx)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"performance_schema", "thread_handling", "innodb_buffer_pool_size"}
    ENGINE.configure(ctx, node.provider.runner(ctx.node_id))
    ENGINE.apply_live(ctx, node.ca_file, [k for k in changed if ENGINE.is_dynamic(k)])
    # The buffer pool waits for the restart that brings the Performance Schema.
    assert _variable(node, "innodb_buffer_pool_size") == str(128 * 1024 * 1024)
    assert _variable(node, "performance_schema") == "OFF"

    node.restart(parameters=params)
    assert _variable(node, "performance_schema") == "ON"
    assert _variable(node, "thread_handling") == "pool-of-threads"
    assert _variable(node, "innodb_buffer_pool_size") == str(78 * 1024 * 1024)
    with _admin(node) as conn:
        assert _query(conn, "SELECT COUNT(*) FROM notes") == [(1,)]
    _load(node, 150_000)  # fills the buffer pool again, now beside the P_S
    group = _memory_cgroup(node)
    if group is not None:
        assert _oom_kills(group) == 0


def test_passwords_never_reach_the_binary_or_slow_log() -> None:
    """Creating the admin and a user and rotating the user's password write
    mysql_native_password hashes to the binary log (and the slow log, with every
    statement logged), never a password; the passwords still log in."""
    from hoard.engines.mariadb.backup import BINLOG_DIR, DATA

    slow_all = {"slow_query_log": True, "long_query_time": 0}
    with running_node(ENGINE, parameters=slow_all) as logged:
        e, ctx, ca = logged.engine, logged.ctx, logged.ca_file
        assert isinstance(e, MariaDB)
        first, second = "first-Secret-0451", "second-Secret-0452"
        e.create_user(ctx, ca, "clerk", first)
        e.set_password(ctx, ca, "clerk", second)
        with _connect(logged, "clerk", second, None) as conn:
            assert _query(conn, "SELECT CURRENT_USER()") == [("clerk@%",)]
        with pytest.raises(pymysql.MySQLError):
            _connect(logged, "clerk", first, None)
        with _admin(logged) as conn:
            assert _query(conn, "SELECT DATABASE()") == [("app",)]
        root = logged.provider.runner(ctx.node_id).root
        binlogs = sorted(str(p) for p in (root / BINLOG_DIR).glob("binlog.[0-9]*"))
        decoded = subprocess.run(["mariadb-binlog", "--no-defaults", *binlogs],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        slow = (root / DATA / "slow.log").read_text()
        for secret in (first, second, ctx.admin.password, ctx.service.password):
            assert secret not in decoded and secret not in slow
        assert "IDENTIFIED BY PASSWORD '*" in decoded
