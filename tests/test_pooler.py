"""PostgreSQL clusters' connection pooler (PgBouncer), against real servers:
TLS verified against Hoard's CA and SCRAM with the cluster's own users, more
clients than the server takes in transaction mode, a switchover survived, a
dead pooler restarted, the pooler closed with its address freed, and bad
input refused with nothing changed."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import (
    HoardServer,
    ca_file_for,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    wait_operation,
)

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
POOLER = {"mode": "transaction", "max_client_conn": 300}


def _pooler_endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    found = [e for e in cluster["endpoints"] if e["role"] == "pooler"]
    assert len(found) == 1, cluster["endpoints"]
    return found[0]


def _connect(endpoint: dict[str, Any], user: str, password: str, ca: Path,
             timeout: int = 3) -> psycopg.Connection:
    """Through the pooler, as a tenant does: TLS with the name checked against
    Hoard's CA, SCRAM."""
    return psycopg.connect(host=endpoint["host"], port=endpoint["port"], user=user,
                           password=password, dbname="app", sslmode="verify-full",
                           sslrootcert=str(ca), connect_timeout=timeout, autocommit=True)


def _admin_password(client: httpx.Client, cluster_id: str) -> str:
    answer = client.get(f"/v2/clusters/{cluster_id}/credentials")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["password"])


def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    """Ask ``check`` until it answers something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (psycopg.Error, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s: {last!r}")


def _pooler_pid(hoard: HoardServer, cluster_id: str) -> int | None:
    record = hoard.state_dir / "private" / "poolers" / cluster_id / "process-pooler.json"
    try:
        return int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _pooler_addresses(hoard: HoardServer, cluster_id: str) -> list[str]:
    with sqlite3.connect(hoard.state_dir / "state.sqlite") as db:
        return [r[0] for r in db.execute(
            "SELECT address FROM addresses WHERE cluster_id = ? AND role = 'pooler'",
            (cluster_id,))]


@pytest.fixture(scope="module")
def tenant(hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client() as admin:
        token = new_tenant(admin, "pooling")
    with hoard.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def pooled(tenant: httpx.Client) -> Iterator[dict[str, Any]]:
    """A standalone PostgreSQL cluster made with a pooler (shared by the tests that
    only read it; the last test closes the pooler)."""
    cluster = create_cluster(tenant, "pooled", pooler=POOLER)
    yield cluster
    delete_cluster(tenant, cluster["id"])


def test_tls_and_scram_through_the_pooler(tenant: httpx.Client, pooled: dict[str, Any]
                                          ) -> None:
    cid = pooled["id"]
    endpoint = _pooler_endpoint(pooled)
    direct = next(e for e in pooled["endpoints"] if e["role"] == "read-write")
    assert endpoint["port"] == 6432 and endpoint["host"] != direct["host"]
    assert pooled["pooler"] == POOLER
    listed = next(c for c in tenant.get("/v2/clusters").json()["clusters"] if c["id"] == cid)
    assert (listed["pooler"], listed["endpoints"]) == (POOLER, pooled["endpoints"])
    ca = ca_file_for(tenant)

    with _connect(endpoint, "admin", _admin_password(tenant, cid), ca) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("admin",)
        # The server sees the pooler's connection, which it took over TLS too.
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone() == (True,)

    made = tenant.post(f"/v2/clusters/{cid}/users", json={"name": "app_user",
                                                           "databases": ["app"]})
    assert made.status_code in (201, 202), made.text
    if made.status_code == 202:
        assert wait_operation(tenant, made.json()["operation"]["id"])["status"] == "succeeded"
    password = made.json()["user"]["password"]
    # Known to the pooler as soon as the API answered.
    with _connect(endpoint, "app_user", password, ca) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app_user",)

    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        _connect(endpoint, "app_user", password + "x", ca).close()
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        _connect(endpoint, "hoard", "anything", ca).close()  # Hoard's own is not listed
    # No certificate check, no connection: the pooler's is Hoard's, for its address.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=endpoint["host"], port=6432, user="admin", password="x",
                        dbname="app", sslmode="disable", connect_timeout=3).close()


def test_more_clients_than_the_server_takes(hoard: HoardServer, tenant: httpx.Client,
                                            pooled: dict[str, Any], tmp_path: Path) -> None:
    log = (hoard.state_dir / "poolers" / pooled["id"] / "log" / "pooler.log").read_text()
    found = re.search(r"kernel file descriptor limit: (\d+)", log)
    assert found and int(found.group(1)) > POOLER["max_client_conn"], log[-2000:]
    endpoint = _pooler_endpoint(pooled)
    password = _admin_password(tenant, pooled["id"])
    with _connect(endpoint, "admin", password, ca_file_for(tenant)) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None
    clients = 3 * int(row[0])  # 150 on a nano node
    script = tmp_path / "select.sql"
    script.write_text("SELECT 1;\n")
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "verify-full",
           "PGSSLROOTCERT": str(ca_file_for(tenant))}
    run = subprocess.run(
        [PGBENCH, "-n", "-c", str(clients), "-j", "2", "-t", "3", "-f", str(script),
         "-h", endpoint["host"], "-p", str(endpoint["port"]), "-U", "admin", "app"],
        env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"number of clients: {clients}" in run.stdout
    assert f"number of transactions actually processed: {clients * 3}/{clients * 3}" in (
        run.stdout), run.stdout


def test_a_dead_pooler_is_restarted(hoard: HoardServer, tenant: httpx.Client,
                                    pooled: dict[str, Any]) -> None:
    pid = _pooler_pid(hoard, pooled["id"])
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    endpoint = _pooler_endpoint(pooled)
    password, ca = _admin_password(tenant, pooled["id"]), ca_file_for(tenant)

    def serving() -> bool:
        with _connect(endpoint, "admin", password, ca, timeout=1) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    _until("the pooler serves again", serving)
    assert _pooler_pid(hoard, pooled["id"]) not in (None, pid)
    _until("an event says the pooler was restarted", lambda: "pooler.restarted" in [
        e["kind"] for e in tenant.get(f"/v2/clusters/{pooled['id']}/events").json()["events"]])


def test_bad_input_is_refused_and_nothing_changes(hoard: HoardServer, tenant: httpx.Client,
                                                  pooled: dict[str, Any]) -> None:
    cid = pooled["id"]

    def started() -> int:  # operations begun on the cluster
        return [e["kind"] for e in tenant.get(f"/v2/clusters/{cid}/events").json()["events"]
                ].count("operation.started")

    before, ops_before = tenant.get(f"/v2/clusters/{cid}").json(), started()
    cases = [
        ({"pooler": {"mode": "statement", "max_client_conn": 100}}, "pooler.mode"),
        ({"pooler": {"mode": "session", "max_client_conn": 5}}, "pooler.max_client_conn"),
        ({"pooler": {"mode": "session", "max_client_conn": 100_000}},
         "pooler.max_client_conn"),
        ({"pooler": {"mode": "session", "max_client_conn": 100, "port": 1}}, "pooler.port"),
        ({"pooler": {"mode": "session"}}, "pooler.max_client_conn"),
        ({"pooler": {"mode": "session", "max_client_conn": "100"}}, "pooler.max_client_conn"),
        ({"pooler": POOLER}, "already has these settings"),
        ({"pooler": {"mode": "session", "max_client_conn": 100}, "size": "small"},
         "on its own"),
    ]
    for body, said in cases:
        answer = tenant.patch(f"/v2/clusters/{cid}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert said in answer.text, (body, answer.text)
    redis = tenant.post("/v2/clusters", json={"name": "no-pool", "engine": "redis",
                                              "size": "nano", "pooler": POOLER})
    assert redis.status_code == 422 and "Redis clusters have no connection pooler" in (
        redis.text), redis.text
    assert "no-pool" not in [c["name"] for c in tenant.get("/v2/clusters").json()["clusters"]]
    bad_create = tenant.post("/v2/clusters", json={"name": "bad-pool", "engine": "postgresql",
                                                   "size": "nano",
                                                   "pooler": {"mode": "transaction"}})
    assert bad_create.status_code == 422, bad_create.text
    # A dry run plans it and changes nothing either.
    plan = tenant.patch(f"/v2/clusters/{cid}?dry_run=true",
                        json={"pooler": {"mode": "session", "max_client_conn": 100}})
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"]["operation"] == "pooler"
    after = tenant.get(f"/v2/clusters/{cid}").json()
    assert (after["pooler"], after["endpoints"]) == (before["pooler"], before["endpoints"])
    assert started() == ops_before  # no operation was begun
    assert _pooler_addresses(hoard, cid) == [_pooler_endpoint(before)["host"]]


def test_a_switchover_is_survived(hoard: HoardServer, tenant: httpx.Client) -> None:
    cluster = create_cluster(tenant, "pooled-ha", nodes=2,
                             pooler={"mode": "session", "max_client_conn": 50})
    cid = cluster["id"]
    try:
        endpoint = _pooler_endpoint(cluster)
        password, ca = _admin_password(tenant, cid), ca_file_for(tenant)
        pid = _pooler_pid(hoard, cid)
        with _connect(endpoint, "admin", password, ca) as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.execute("INSERT INTO t VALUES (1)")
        replica = _until("a replica", lambda: next(
            (m for m in tenant.get(f"/v2/clusters/{cid}").json()["members"]
             if m["role"] == "replica"), None))
        op = tenant.post(f"/v2/clusters/{cid}/switchover", json={"node_id": replica["id"]})
        assert op.status_code == 202, op.text
        assert wait_operation(tenant, op.json()["operation"]["id"])["status"] == "succeeded"

        def written() -> Any:
            with _connect(endpoint, "admin", password, ca, timeout=2) as conn:
                conn.execute("INSERT INTO t VALUES (2)")
                return conn.execute("SELECT inet_server_port(), pg_is_in_recovery(), "
                                    "count(*) FROM t").fetchone()

        # Clients reconnect through the same pooler and reach the new primary.
        port, in_recovery, rows = _until("a write through the pooler", written)
        assert (port, in_recovery) == (replica["port"], False)
        assert rows >= 2
        assert _pooler_pid(hoard, cid) == pid  # the same pooler, never restarted
    finally:
        delete_cluster(tenant, cid)
    assert not (hoard.state_dir / "poolers" / cid).exists()
    assert _pooler_addresses(hoard, cid) == []


def test_changing_the_pooler_reloads_it(hoard: HoardServer, tenant: httpx.Client,
                                        pooled: dict[str, Any]) -> None:
    cid = pooled["id"]
    pid = _pooler_pid(hoard, cid)
    asked = {"mode": "session", "max_client_conn": 100}
    answer = tenant.patch(f"/v2/clusters/{cid}", json={"pooler": asked})
    assert answer.status_code == 202, answer.text
    assert wait_operation(tenant, answer.json()["operation"]["id"])["status"] == "succeeded"
    after = tenant.get(f"/v2/clusters/{cid}").json()
    assert after["pooler"] == asked
    assert _pooler_endpoint(after) == _pooler_endpoint(pooled)  # the same address
    assert _pooler_pid(hoard, cid) == pid  # reloaded, not restarted
    with _connect(_pooler_endpoint(after), "admin", _admin_password(tenant, cid),
                  ca_file_for(tenant)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_closing_the_pooler_stops_it_and_frees_its_address(
        hoard: HoardServer, tenant: httpx.Client, pooled: dict[str, Any]) -> None:
    cid = pooled["id"]
    endpoint = _pooler_endpoint(tenant.get(f"/v2/clusters/{cid}").json())
    answer = tenant.patch(f"/v2/clusters/{cid}", json={"pooler": None})
    assert answer.status_code == 202, answer.text
    op = wait_operation(tenant, answer.json()["operation"]["id"])
    assert op["status"] == "succeeded", op
    after = tenant.get(f"/v2/clusters/{cid}").json()
    assert after["pooler"] is None
    assert [e["role"] for e in after["endpoints"]] == ["read-write"]
    assert _pooler_addresses(hoard, cid) == []
    assert _pooler_pid(hoard, cid) is None
    assert not (hoard.state_dir / "poolers" / cid).exists()
    with pytest.raises(psycopg.OperationalError):
        _connect(endpoint, "admin", "x", ca_file_for(tenant), timeout=2).close()
    again = tenant.patch(f"/v2/clusters/{cid}", json={"pooler": None})
    assert again.status_code == 422 and "no pooler" in again.text


def test_a_pooler_that_fails_to_open_leaves_nothing() -> None:
    """The open step fails (injected): the cluster is left as it was, with no
    pooler process, directory or address."""
    with hoard_server({"HOARD_FAIL_STEP": "open pooler"}) as server, server.client() as admin:
        token = new_tenant(admin, "failing")
        with server.client(token) as client:
            plain = create_cluster(client, "plain")
            answer = client.patch(f"/v2/clusters/{plain['id']}", json={"pooler": POOLER})
            assert answer.status_code == 202, answer.text
            op = wait_operation(client, answer.json()["operation"]["id"])
            assert op["status"] == "failed" and "open pooler" in op["error"], op
            after = client.get(f"/v2/clusters/{plain['id']}").json()
            assert after["pooler"] is None and after["endpoints"] == plain["endpoints"]
            assert _pooler_addresses(server, plain["id"]) == []
            events = client.get(f"/v2/clusters/{plain['id']}/events").json()["events"]
            assert any(e["kind"] == "cluster.pooler" and "no pooler as before" in e["message"]
                       for e in events), events
        poolers = server.state_dir / "poolers"  # no pooler ran, or it went with its files
        assert not poolers.exists() or list(poolers.iterdir()) == []
