"""A cluster's metrics, collected by the observer from real servers (one cluster
per engine, shared by the module): the connections and lock-wait gauges count
exactly what a test holds open, the counter-derived rate moves under each
engine's own load tool, the query is validated, another project sees nothing,
and operators scrape every node's numbers at /metrics/clusters."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import psycopg
import pymysql
import pytest
import redis

from hoard.domain.catalog import SIZES
from tests.conftest import ADMIN_TOKEN, HoardServer, hoard_server, new_tenant, tenant_uri
from tests.test_cli import as_json, hoard_cli

ENGINES = ("postgresql", "mariadb", "redis")
FAST = {"HOARD_OBSERVE_INTERVAL": "0.3", "HOARD_METRICS_INTERVAL": "0.3"}
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server(FAST) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: HoardServer) -> Iterator[httpx.Client]:
    with server.client() as admin:
        token = new_tenant(admin, "metrics-tenant")
    with server.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def clusters(tenant: httpx.Client) -> dict[str, str]:
    """One nano cluster per engine and a two-node Redis ("redis-ha"), built at the
    same time; engine -> cluster id."""
    started = {}
    for engine, nodes in (*((e, 1) for e in ENGINES), ("redis-ha", 2)):
        answer = tenant.post("/v2/clusters", json={
            "name": f"m-{engine}", "engine": engine.removesuffix("-ha"), "size": "nano",
            "storage_gb": 1, "nodes": nodes})
        assert answer.status_code == 202, answer.text
        started[engine] = answer.json()
    for engine, body in started.items():
        op = body["operation"]["id"]
        deadline = time.monotonic() + 120
        while (state := tenant.get(f"/v2/operations/{op}").json())["status"] == "running":
            assert time.monotonic() < deadline, f"{engine} create still running"
            time.sleep(0.2)
        assert state["status"] == "succeeded", (engine, state["error"])
    return {engine: body["cluster"]["id"] for engine, body in started.items()}


def _points(client: httpx.Client, cluster_id: str, metric: str,
            since: str = "20s", ordinal: int = 0) -> list[list[float]]:
    answer = client.get(f"/v2/clusters/{cluster_id}/metrics",
                        params={"since": since, "step": 1})
    assert answer.status_code == 200, answer.text
    found = [s["points"] for s in answer.json()["series"]
             if s["metric"] == metric and s["ordinal"] == ordinal]
    return found[0] if found else []


def _wait_for(client: httpx.Client, cluster_id: str, metric: str,
              ok: Callable[[list[list[float]]], bool], timeout: float = 20,
              ordinal: int = 0) -> list[list[float]]:
    """The metric's points (of node ``ordinal``) once ``ok`` holds for them (the
    observer samples every 0.3 s; a sample reaches the store with its batch)."""
    deadline = time.monotonic() + timeout
    while True:
        points = _points(client, cluster_id, metric, ordinal=ordinal)
        if points and ok(points):
            return points
        assert time.monotonic() < deadline, f"{metric}: {points[-10:]}"
        time.sleep(0.2)


def _latest_is(value: float) -> Callable[[list[list[float]]], bool]:
    return lambda points: points[-1][1] == value


# --- a client of each engine, from the tenant's credentials ------------------

def _open(engine: str, uri: str) -> Any:
    """One connection of the tenant's admin account."""
    if engine == "postgresql":
        return psycopg.connect(uri, autocommit=True)
    parts, query = urlparse(uri), parse_qs(urlparse(uri).query)
    if engine == "mariadb":
        return pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                               user=unquote(parts.username or ""),
                               password=unquote(parts.password or ""), database="app",
                               ssl_ca=query["ssl_ca"][0], autocommit=True)
    client = redis.Redis.from_url(uri)
    client.ping()
    return client


def _parts(uri: str) -> tuple[str, int, str, str, str]:
    """host, port, user, password and CA file of a MariaDB or Redis URI."""
    parts, query = urlparse(uri), parse_qs(urlparse(uri).query)
    ca = (query.get("ssl_ca") or query["ssl_ca_certs"])[0]
    return (parts.hostname or "", parts.port or 0, unquote(parts.username or ""),
            unquote(parts.password or ""), ca)


def _load(engine: str, uri: str) -> float:
    """Run the engine's own load tool against the cluster; the operations per
    second it reports."""
    if engine == "postgresql":
        for argv in (["-i", "-q", "-s", "1"], ["-n", "-c", "2", "-T", "2"]):
            run = subprocess.run([PGBENCH, *argv, uri], capture_output=True, text=True,
                                 timeout=120, check=False)
            assert run.returncode == 0, run.stderr[-2000:]
        return float(re.findall(r"tps = ([0-9.]+)", run.stdout)[0])
    host, port, user, password, ca = _parts(uri)
    if engine == "mariadb":
        with _open(engine, uri) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS loaded (id INT PRIMARY KEY, v INT)")
            cur.execute("INSERT IGNORE INTO loaded VALUES (1, 1)")
        t0 = time.monotonic()
        run = subprocess.run(
            ["mariadb-slap", "--host", host, "--port", str(port), "--user", user,
             f"--ssl-ca={ca}", "--create-schema=app", "--concurrency=2", "--iterations=1",
             "--number-of-queries=10000", "--query=SELECT v FROM loaded WHERE id = 1"],
            capture_output=True, text=True, timeout=120, check=False,
            env={"PATH": "/usr/bin:/bin", "MYSQL_PWD": password})
        assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-2000:]
        return 10000 / (time.monotonic() - t0)
    run = subprocess.run(
        ["redis-benchmark", "-h", host, "-p", str(port), "--tls", "--cacert", ca,
         "--user", user, "-a", password, "-t", "set,get", "-n", "20000", "-c", "4", "--csv"],
        capture_output=True, text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-2000:]
    rates = [float(row.split(",")[1].strip('"')) for row in run.stdout.splitlines()[1:]
             if row.count(",") > 1]
    return min(rates)


@pytest.mark.parametrize("engine", ENGINES)
def test_connections_count_what_the_tenant_holds_open(
        engine: str, tenant: httpx.Client, clusters: dict[str, str]) -> None:
    cluster_id = clusters[engine]
    uri = tenant_uri(tenant, cluster_id)
    _wait_for(tenant, cluster_id, "connections", _latest_is(0))
    held = [_open(engine, uri) for _ in range(3)]
    try:
        _wait_for(tenant, cluster_id, "connections", _latest_is(3))
    finally:
        for conn in held:
            conn.close()
    _wait_for(tenant, cluster_id, "connections", _latest_is(0))


def _hold_lock(engine: str, uri: str) -> tuple[Callable[[], None], threading.Thread]:
    """Make one session wait for a lock another holds; a release that ends the wait."""
    holder, waiter = _open(engine, uri), _open(engine, uri)
    if engine == "postgresql":
        holder.execute("CREATE TABLE IF NOT EXISTS locked (id int)")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE locked")
        wait = lambda: waiter.execute("SELECT * FROM locked")  # noqa: E731
        release = lambda: holder.execute("COMMIT")  # noqa: E731
    elif engine == "mariadb":
        with holder.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS locked (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute("INSERT IGNORE INTO locked VALUES (1)")
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM locked WHERE id = 1 FOR UPDATE")
        wait = lambda: waiter.cursor().execute("UPDATE locked SET id = 1 WHERE id = 1")  # noqa: E731
        release = lambda: holder.commit()  # noqa: E731
    else:
        wait = lambda: waiter.blpop(["locked"], timeout=30)  # noqa: E731
        release = lambda: holder.lpush("locked", "go")  # noqa: E731
    thread = threading.Thread(target=wait)
    thread.start()

    def done() -> None:
        release()
        thread.join(timeout=30)
        holder.close()
        waiter.close()

    return done, thread


@pytest.mark.parametrize("engine", ENGINES)
def test_lock_waits_count_a_waiting_session(
        engine: str, tenant: httpx.Client, clusters: dict[str, str]) -> None:
    cluster_id = clusters[engine]
    done, thread = _hold_lock(engine, tenant_uri(tenant, cluster_id))
    try:
        _wait_for(tenant, cluster_id, "lock_waits", _latest_is(1))
    finally:
        done()
    assert not thread.is_alive()
    _wait_for(tenant, cluster_id, "lock_waits", _latest_is(0))


@pytest.mark.parametrize("engine", ENGINES)
def test_load_moves_the_operations_rate(
        engine: str, tenant: httpx.Client, clusters: dict[str, str]) -> None:
    cluster_id = clusters[engine]
    reported = _load(engine, tenant_uri(tenant, cluster_id))
    # A step inside the load saw about what the tool reports (Hoard's own few
    # queries a second add to it); halved for the steps the load only partly filled.
    points = _wait_for(tenant, cluster_id, "operations_per_second",
                       lambda ps: max(v for _, v in ps) >= reported / 2)
    assert max(v for _, v in points) >= 10
    ratio = _points(tenant, cluster_id, "cache_hit_ratio")
    assert ratio and all(0 <= v <= 1 for _, v in ratio)


@pytest.mark.parametrize("engine", ENGINES)
def test_storage_cpu_and_memory_against_the_limits(
        engine: str, tenant: httpx.Client, clusters: dict[str, str]) -> None:
    cluster_id = clusters[engine]
    member = tenant.get(f"/v2/clusters/{cluster_id}").json()["members"][0]
    used = _points(tenant, cluster_id, "storage_used_bytes")
    total = _points(tenant, cluster_id, "storage_total_bytes")
    assert used and total and 0 < used[-1][1] <= total[-1][1]
    assert total[-1][1] == member["storage"]["total_bytes"]
    memory = _points(tenant, cluster_id, "memory_used_bytes")
    assert memory and memory[-1][1] > 0
    if member["limits"]["memory"].startswith("enforced"):
        limit = _points(tenant, cluster_id, "memory_limit_bytes")
        assert limit[-1][1] == SIZES["nano"].memory_mb * 1024 * 1024
    if member["limits"]["cpu"].startswith("enforced"):
        cpu = _points(tenant, cluster_id, "cpu_usage_ratio")
        assert cpu and all(v >= 0 for _, v in cpu)


def test_the_query_is_validated(tenant: httpx.Client, clusters: dict[str, str]) -> None:
    url = f"/v2/clusters/{clusters['redis']}/metrics"
    for params, words in (({"since": "soon"}, "neither a duration"),
                          ({"since": "2026-12-04T08:00:00"}, "no time zone"),
                          ({"since": "30d"}, "kept for 7 days"),
                          ({"since": "2999-01-01T00:00:00Z"}, "not in the past"),
                          ({"since": "24h", "step": 10}, "at least 61 s"),
                          ({"step": 0}, "step"), ({"step": "often"}, "step")):
        answer = tenant.get(url, params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"], (params, answer.json())
    answer = tenant.get(url, params={"since": "1h"}).json()
    assert answer["step"] == 30 and answer["interval"] == 0.3
    points = [p for s in answer["series"] for p in s["points"]]
    assert points and all(t % 30 == 0 for t, _ in points)  # steps on a fixed grid


def test_another_project_sees_no_metrics(server: HoardServer,
                                         clusters: dict[str, str]) -> None:
    with server.client() as admin:
        token = new_tenant(admin, "metrics-stranger")
    with server.client(token) as stranger:
        answer = stranger.get(f"/v2/clusters/{clusters['postgresql']}/metrics")
    assert answer.status_code == 404, answer.text


def test_operators_scrape_every_node(server: HoardServer, tenant: httpx.Client,
                                     clusters: dict[str, str]) -> None:
    with server.client(ADMIN_TOKEN) as admin:
        body = admin.get("/metrics/clusters").text
    for engine, cluster_id in clusters.items():
        node = tenant.get(f"/v2/clusters/{cluster_id}").json()["members"][0]["id"]
        labels = (f'{{cluster="m-{engine}",engine="{engine.removesuffix("-ha")}",node="{node}",'
                  f'project="metrics-tenant"}}')
        for name in ("hoard_node_connections", "hoard_node_operations_total",
                     "hoard_node_storage_used_bytes", "hoard_node_memory_used_bytes"):
            assert f"{name}{labels}" in body, (name, labels)
    assert tenant.get("/metrics/clusters").status_code == 403


def test_cluster_top_shows_each_node(server: HoardServer, tenant: httpx.Client,
                                     clusters: dict[str, str]) -> None:
    token = tenant.headers["Authorization"].removeprefix("Bearer ")
    _wait_for(tenant, clusters["redis"], "connections", _latest_is(0))
    shown = as_json(hoard_cli(server, token, "cluster", "top", "m-redis", "-o", "json"))
    assert shown["0"]["connections"] == 0 and shown["0"]["storage_used_bytes"] > 0
    table = hoard_cli(server, token, "cluster", "top", "m-redis", "--once")
    assert table.returncode == 0, table.stderr
    assert "m-redis (redis, ACTIVE)" in table.stdout and "ops/s" in table.stdout


def test_a_replicated_cluster_reports_every_member(tenant: httpx.Client,
                                                   clusters: dict[str, str]) -> None:
    """Each member's own numbers, and the lag the HA machinery reports: Sentinel's
    and the replication link's connections are not the tenant's."""
    cluster_id = clusters["redis-ha"]
    writer = redis.Redis.from_url(tenant_uri(tenant, cluster_id))
    try:
        writer.mset({f"k{i}": "x" * 100 for i in range(1000)})
    finally:
        writer.close()
    for ordinal in (0, 1):
        _wait_for(tenant, cluster_id, "replication_lag_bytes", _latest_is(0), ordinal=ordinal)
        _wait_for(tenant, cluster_id, "connections", _latest_is(0), ordinal=ordinal)
        assert _points(tenant, cluster_id, "storage_used_bytes", ordinal=ordinal)
