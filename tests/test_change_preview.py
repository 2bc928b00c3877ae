"""PATCH /v2/clusters/{id}?dry_run=true: the plan of a change (what applies live,
what needs a restart and when, the downtime), against a real Hoard and real
servers of every engine; and proof that nothing changed: the cluster's row, its
operations and its events are read from the state store before and after."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HoardServer, new_tenant, wait_operation

ENGINES = ("postgresql", "mariadb", "redis")
REPLICATED = "postgresql-replicated"  # two nodes, behind stable endpoints
# Per engine: a restart-only parameter and a live one (GET /v2/engines/{name}).
RESTART_ONLY = {"postgresql": {"max_connections": 60},
                "mariadb": {"thread_handling": "pool-of-threads"},
                "redis": {"databases": 32}}
LIVE = {"postgresql": {"work_mem": 8192}, "mariadb": {"wait_timeout": 600},
        "redis": {"timeout": 300}}
# A resize from nano to small: a restart-only setting derived from the size changes
# on PostgreSQL (shared_buffers) and MariaDB (its log buffer); Redis resizes live.
RESIZE_RESTARTS = {"postgresql": "shared_buffers", "mariadb": "innodb_log_buffer_size",
                   "redis": None}


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client(new_tenant(admin, f"preview-{time.monotonic_ns()}")) as client:
        yield client


@pytest.fixture(scope="module")
def clusters(tenant: httpx.Client) -> Iterator[dict[str, dict[str, Any]]]:
    """One nano cluster per engine and a replicated PostgreSQL one, made at once and
    shared: dry runs change nothing."""
    ops = {}
    for engine in (*ENGINES, REPLICATED):
        answer = tenant.post("/v2/clusters", json={
            "name": f"plan-{engine}", "engine": engine.partition("-")[0], "size": "nano",
            "storage_gb": 2, "nodes": 2 if engine == REPLICATED else 1})
        assert answer.status_code == 202, answer.text
        ops[engine] = (answer.json()["cluster"]["id"], answer.json()["operation"]["id"])
    try:
        for _, op_id in ops.values():
            op = wait_operation(tenant, op_id)
            assert op["status"] == "succeeded", op["error"]
        yield {engine: tenant.get(f"/v2/clusters/{cid}").json()
               for engine, (cid, _) in ops.items()}
    finally:  # deleted together, as they were made
        deletes = [tenant.delete(f"/v2/clusters/{cluster_id}") for cluster_id, _ in ops.values()]
        for answer in deletes:
            assert answer.status_code == 202, answer.text
            op = wait_operation(tenant, answer.json()["operation"]["id"])
            assert op["status"] == "succeeded", op["error"]


def configuration(client: httpx.Client, engine: str, values: dict[str, Any]) -> str:
    answer = client.post("/v2/configurations", json={
        "name": f"c{time.monotonic_ns()}", "engine": engine, "values": values})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def snapshot(hoard: HoardServer, cluster_id: str) -> tuple[Any, ...]:
    """The cluster's row, its operations and its events, exactly as stored."""
    db = sqlite3.connect(f"file:{hoard.state_dir / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return (db.execute("SELECT * FROM clusters WHERE id = ?", (cluster_id,)).fetchall(),
                db.execute("SELECT * FROM operations WHERE cluster_id = ? ORDER BY id",
                           (cluster_id,)).fetchall(),
                db.execute("SELECT * FROM events WHERE cluster_id = ? ORDER BY id",
                           (cluster_id,)).fetchall())
    finally:
        db.close()


def dry_run(client: httpx.Client, hoard: HoardServer, cluster_id: str,
            body: dict[str, Any]) -> dict[str, Any]:
    """The plan of ``body``, checked to have changed nothing."""
    before = snapshot(hoard, cluster_id)
    answer = client.patch(f"/v2/clusters/{cluster_id}", params={"dry_run": "true"}, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["operation"] is None
    assert snapshot(hoard, cluster_id) == before
    return dict(answer.json()["plan"])


def field(plan: dict[str, Any], name: str) -> dict[str, Any]:
    return next(dict(c) for c in plan["changes"] if c["field"] == name)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_restart_only_parameter_waits_for_a_restart(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]],
        engine: str) -> None:
    config = configuration(tenant, engine, RESTART_ONLY[engine])
    plan = dry_run(tenant, hoard, clusters[engine]["id"], {"configuration_id": config})
    (name,) = RESTART_ONLY[engine]
    assert plan["operation"] == "update"
    assert name in plan["pending_restart"] and plan["restart"] == [], plan
    assert field(plan, "configuration_id")["applies"] == "pending_restart"
    assert "no maintenance window is set" in plan["pending_applies"]
    assert "/actions/apply-pending" in plan["pending_applies"]
    assert plan["downtime"] == {"kind": "none", "failover": False,
                                "detail": "the cluster serves throughout"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_live_parameter_applies_without_downtime(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]],
        engine: str) -> None:
    config = configuration(tenant, engine, LIVE[engine])
    plan = dry_run(tenant, hoard, clusters[engine]["id"], {"configuration_id": config})
    (name,) = LIVE[engine]
    assert name in plan["live"] and plan["pending_restart"] == [], plan
    assert plan["pending_applies"] == "" and plan["downtime"]["kind"] == "none"
    assert field(plan, "configuration_id")["applies"] == "live"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_resize_restarts_only_where_a_setting_needs_it(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]],
        engine: str) -> None:
    plan = dry_run(tenant, hoard, clusters[engine]["id"], {"size": "small"})
    resize = field(plan, "size")
    assert (resize["current"], resize["requested"]) == ("nano", "small")
    if RESIZE_RESTARTS[engine]:
        assert resize["applies"] == "restart" and RESIZE_RESTARTS[engine] in plan["restart"]
        assert plan["downtime"]["kind"] == "restart" and not plan["downtime"]["failover"]
    else:
        assert resize["applies"] == "live" and plan["restart"] == [], plan
        assert plan["live"] and plan["downtime"]["kind"] == "none"
    assert plan["pending_restart"] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_storage_growth_says_whether_the_server_stops(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]],
        engine: str) -> None:
    cluster = clusters[engine]
    plan = dry_run(tenant, hoard, cluster["id"], {"storage_gb": 3})
    growth = field(plan, "storage_gb")
    assert (growth["current"], growth["requested"]) == (2, 3)
    # A filesystem of the node's own that cannot grow mounted here is grown with
    # the server stopped; one that can (or a plain directory) with the server up.
    stops = "grown with its node stopped" in cluster["members"][0]["limits"]["storage"]
    assert growth["applies"] == ("restart" if stops else "live"), growth
    assert plan["downtime"]["kind"] == ("restart" if stops else "none"), plan
    assert plan["restart"] == []


def test_record_only_fields_are_planned_at_once(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]]) -> None:
    window = {"day": "sun", "start": "03:30", "duration_minutes": 60}
    plan = dry_run(tenant, hoard, clusters["redis"]["id"],
                   {"labels": {"env": "prod"}, "maintenance_window": window,
                    "deletion_protection": True})
    assert plan["operation"] is None and plan["downtime"]["kind"] == "none"
    assert {c["field"]: (c["requested"], c["applies"]) for c in plan["changes"]} == {
        "labels": ({"env": "prod"}, "at_once"), "maintenance_window": (window, "at_once"),
        "deletion_protection": (True, "at_once")}


REFUSED = [
    ({"storage_gb": 1}, 422, "storage can grow, not shrink"),
    ({"size": "huge"}, 422, "unknown size"),
    ({"nodes": 3}, 422, "a standalone cluster keeps one node"),
    ({"durability": "sync"}, 422, "durability applies to replicated clusters"),
    ({"configuration_id": "00000000-0000-4000-8000-000000000000"}, 404,
     "no configuration"),
    ({"storage_gb": 16000}, 403, "storage quota exceeded"),
    ({"size": "nano"}, 422, "nothing to change"),
    ({"labels": {}, "size": "small"}, 422, "on their own"),
    ({"maintenance_window": {"day": "someday", "start": "03:00", "duration_minutes": 60}},
     422, "day 'someday'"),
    ({"sizes": "small"}, 422, "sizes"),
]


@pytest.mark.parametrize(("body", "status", "words"), REFUSED)
def test_a_refused_dry_run_answers_as_the_change_would(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]],
        body: dict[str, Any], status: int, words: str) -> None:
    cluster_id = clusters["redis"]["id"]
    before = snapshot(hoard, cluster_id)
    dry = tenant.patch(f"/v2/clusters/{cluster_id}", params={"dry_run": "true"}, json=body)
    real = tenant.patch(f"/v2/clusters/{cluster_id}", json=body)
    assert (dry.status_code, dry.json()) == (real.status_code, real.json())
    assert dry.status_code == status and words in dry.json()["detail"], dry.text
    assert snapshot(hoard, cluster_id) == before


def test_another_engines_configuration_is_refused_alike(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]]) -> None:
    config = configuration(tenant, "postgresql", LIVE["postgresql"])
    cluster_id = clusters["redis"]["id"]
    before = snapshot(hoard, cluster_id)
    body = {"configuration_id": config}
    dry = tenant.patch(f"/v2/clusters/{cluster_id}", params={"dry_run": "true"}, json=body)
    real = tenant.patch(f"/v2/clusters/{cluster_id}", json=body)
    assert (dry.status_code, dry.json()) == (real.status_code, real.json())
    assert dry.status_code == 422 and "is for postgresql" in dry.json()["detail"]
    assert snapshot(hoard, cluster_id) == before


def test_a_dry_run_during_an_operation_is_refused_as_the_change_is(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]]) -> None:
    cluster_id = clusters["postgresql"]["id"]
    restart = tenant.post(f"/v2/clusters/{cluster_id}/actions/restart")
    assert restart.status_code == 202, restart.text
    op_id = restart.json()["operation"]["id"]
    body = {"size": "small"}
    dry = tenant.patch(f"/v2/clusters/{cluster_id}", params={"dry_run": "true"}, json=body)
    real = tenant.patch(f"/v2/clusters/{cluster_id}", json=body)
    held = tenant.get(f"/v2/operations/{op_id}").json()["status"] == "running"
    assert wait_operation(tenant, op_id)["status"] == "succeeded"
    assert held, "the restart ended before both requests were answered"
    assert (dry.status_code, dry.json()) == (real.status_code, real.json())
    assert dry.status_code == 409 and "still running" in dry.json()["detail"], dry.text
    assert tenant.get(f"/v2/clusters/{cluster_id}").json()["size"] == "nano"


def test_a_replicated_cluster_restarts_rolling_with_one_failover(
        tenant: httpx.Client, hoard: HoardServer, clusters: dict[str, dict[str, Any]]) -> None:
    cluster = clusters[REPLICATED]
    plan = dry_run(tenant, hoard, cluster["id"], {"size": "small"})
    assert "shared_buffers" in plan["restart"] and field(plan, "size")["applies"] == "restart"
    assert plan["downtime"]["kind"] == "rolling" and plan["downtime"]["failover"], plan
    assert "one failover" in plan["downtime"]["detail"]
    stops = "grown with its node stopped" in cluster["members"][0]["limits"]["storage"]
    growth = dry_run(tenant, hoard, cluster["id"], {"storage_gb": 3})["downtime"]
    assert (growth["kind"], growth["failover"]) == (("rolling", True) if stops
                                                    else ("none", False)), growth
    assert dry_run(tenant, hoard, cluster["id"], {"durability": "sync"})["changes"] == [{
        "field": "durability", "current": "async", "requested": "sync", "applies": "live",
        "detail": "the engine's HA machinery takes it without a restart"}]
    grow = dry_run(tenant, hoard, cluster["id"], {"nodes": 3})
    assert grow["operation"] == "scale" and grow["downtime"]["kind"] == "none"
    assert field(grow, "nodes")["detail"].startswith("1 node(s) join")
    shrink = field(dry_run(tenant, hoard, cluster["id"], {"nodes": 1}), "nodes")
    assert shrink["detail"].startswith("node(s) 1 leave (replicas first)"), shrink
