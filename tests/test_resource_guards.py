"""Settings bounded by what a node has: memory settings by the size's memory,
WAL sizes by the cluster's storage (refused at the API, naming the limit), and
a restart whose settings keep a server from starting rolled back, the servers
started again with what they ran with before.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from hoard.domain import parameters
from hoard.domain.catalog import MAX_STORAGE_GB, SIZES
from hoard.domain.errors import InvalidInput
from hoard.engines.base import Credentials, NodeContext
from hoard.engines.mariadb import MariaDB
from hoard.engines.postgresql import PostgreSQL
from hoard.engines.redis import Redis
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    tenant_uri,
    wait_operation,
)
from tests.test_api_validation import assert_problem
from tests.test_lifecycle import node_pid

PG, MARIADB, REDIS = PostgreSQL(), MariaDB(), Redis()


def _ctx(size: str, storage_gb: int = 0, **params: Any) -> NodeContext:
    return NodeContext("n", "15", SIZES[size], "127.0.0.1", 1, Credentials("a", "b"),
                       Credentials("c", "d"), params, storage_gb)


# --- the bounds themselves (no server) -------------------------------------------


def test_memory_settings_are_bounded_by_the_size() -> None:
    nano = SIZES["nano"]
    with pytest.raises(InvalidInput, match=r"shared_buffers: 1048576 MB does not fit a nano "
                                           r"node's 256 MB of memory: at most 102 MB \(40%\)"):
        parameters.check_fit(PG.parameters(), {"shared_buffers": 1048576}, nano, 10)
    with pytest.raises(InvalidInput, match=r"work_mem: 100000 kB .* at most 65536 kB"):
        parameters.check_fit(PG.parameters(), {"work_mem": 100000}, nano, 10)
    with pytest.raises(InvalidInput, match=r"innodb_buffer_pool_size: 512 MB .* at most 192 MB"):
        parameters.check_fit(MARIADB.parameters(), {"innodb_buffer_pool_size": 512}, nano, 10)
    with pytest.raises(InvalidInput, match=r"maxmemory: 300 MB .* at most 256 MB"):
        parameters.check_fit(REDIS.parameters(), {"maxmemory": 300}, nano, 10)
    parameters.check_fit(PG.parameters(), {"shared_buffers": 102, "work_mem": 65536}, nano, 10)
    # A value no size can hold is refused when the configuration is made.
    with pytest.raises(InvalidInput, match=r"a large node's 16384 MB"):
        parameters.check_fits_some_size(PG.parameters(), {"shared_buffers": 1048576},
                                        MAX_STORAGE_GB)


def test_wal_sizes_are_bounded_by_the_storage() -> None:
    nano = SIZES["nano"]
    with pytest.raises(InvalidInput, match=r"max_wal_size: 2048 MB does not fit 1 GB of "
                                           r"storage: at most 256 MB \(25%\)"):
        parameters.check_fit(PG.parameters(), {"max_wal_size": 2048}, nano, 1)
    parameters.check_fit(PG.parameters(), {"max_wal_size": 2048}, nano, 8)
    # Only what the change touches is checked: a resize looks at memory alone.
    parameters.check_fit(PG.parameters(), {"max_wal_size": 2048}, nano, 1, storage=False)
    # Derived WAL and redo sizes stay within a quarter of the storage.
    assert PG.settings(_ctx("small", 1))["max_wal_size"] == "256MB"
    assert PG.settings(_ctx("small", 1))["min_wal_size"] == "64MB"
    assert PG.settings(_ctx("small", 100))["max_wal_size"] == "2048MB"
    assert PG.settings(_ctx("small", 1, max_wal_size=128))["min_wal_size"] == "32MB"
    assert MARIADB.settings(_ctx("large", 1))["innodb_log_file_size"] == "256M"
    assert MARIADB.settings(_ctx("large", 100))["innodb_log_file_size"] == "2048M"
    assert PG.is_dynamic("max_wal_size") and PG.is_dynamic("wal_keep_size")


# --- through the API -------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, hoard: HoardServer) -> Iterator[httpx.Client]:
    token = new_tenant(admin, f"guards-{time.monotonic_ns()}")
    with hoard.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def nano(tenant: httpx.Client) -> Iterator[dict[str, Any]]:
    made = create_cluster(tenant, "guarded", storage_gb=1)
    yield made
    if tenant.get(f"/v2/clusters/{made['id']}").status_code == 200:
        delete_cluster(tenant, made["id"])


def _config(client: httpx.Client, name: str, values: dict[str, Any]) -> str:
    made = client.post("/v2/configurations", json={"name": name, "engine": "postgresql",
                                                   "values": values})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _show(client: httpx.Client, cluster_id: str, setting: str) -> str:
    uri = tenant_uri(client, cluster_id)
    with psycopg.connect(uri, connect_timeout=10) as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    return str(row[0]) if row else ""


def _run(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 202, response.text
    return wait_operation(client, response.json()["operation"]["id"])


def test_memory_beyond_the_size_is_refused_and_changes_nothing(
        tenant: httpx.Client, nano: dict[str, Any]) -> None:
    assert_problem(tenant.post("/v2/configurations", json={
        "name": "terabyte", "engine": "postgresql", "values": {"shared_buffers": 1048576}}),
        422, "shared_buffers", "at most 6553 MB")
    big = _config(tenant, "big-buffers", {"shared_buffers": 1024, "work_mem": 131072})
    events = tenant.get(f"/v2/clusters/{nano['id']}/events").json()["events"]
    assert_problem(tenant.patch(f"/v2/clusters/{nano['id']}", json={"configuration_id": big}),
                   422, "shared_buffers: 1024 MB does not fit a nano node's 256 MB of memory: "
                        "at most 102 MB (40%)", "work_mem: 131072 kB")
    after = tenant.get(f"/v2/clusters/{nano['id']}").json()
    assert (after["configuration_id"], after["status"], after["pending_restart"]) == (
        None, "ACTIVE", [])
    assert tenant.get(f"/v2/clusters/{nano['id']}/events").json()["events"] == events
    assert _show(tenant, nano["id"], "shared_buffers") == "64MB"


def test_wal_beyond_the_storage_is_refused(tenant: httpx.Client, nano: dict[str, Any]) -> None:
    assert _show(tenant, nano["id"], "max_wal_size") == "256MB"  # a quarter of 1 GB
    wal = _config(tenant, "big-wal", {"max_wal_size": 2048})
    assert_problem(tenant.patch(f"/v2/clusters/{nano['id']}", json={"configuration_id": wal}),
                   422, "max_wal_size: 2048 MB does not fit 1 GB of storage: at most 256 MB")
    # Storage that is still too small for the configuration is refused with it.
    assert_problem(tenant.patch(f"/v2/clusters/{nano['id']}", json={
        "configuration_id": wal, "storage_gb": 2}), 422, "at most 512 MB")
    assert tenant.get(f"/v2/clusters/{nano['id']}").json()["storage_gb"] == 1


def test_resize_below_the_configuration_is_refused(tenant: httpx.Client) -> None:
    small = create_cluster(tenant, "shrinking", size="small", storage_gb=1)
    try:
        config = _config(tenant, "small-buffers", {"shared_buffers": 300})
        op = _run(tenant, "PATCH", f"/v2/clusters/{small['id']}",
                  json={"configuration_id": config})
        assert op["status"] == "succeeded", op["error"]
        assert_problem(tenant.patch(f"/v2/clusters/{small['id']}", json={"size": "nano"}),
                       422, "shared_buffers: 300 MB does not fit a nano node")
        assert tenant.get(f"/v2/clusters/{small['id']}").json()["size"] == "small"
    finally:
        delete_cluster(tenant, small["id"])


def _store_values(server: HoardServer, config_id: str, values: dict[str, Any]) -> None:
    """Write a configuration's values straight into the state store, as an earlier
    release that had no bounds would have accepted them."""
    with sqlite3.connect(server.state_dir / "state.sqlite", timeout=10) as db:
        db.execute("UPDATE configurations SET \"values\" = ? WHERE id = ?",
                   (json.dumps(values), config_id))


def test_a_setting_that_keeps_the_server_down_is_rolled_back(
        tenant: httpx.Client, nano: dict[str, Any], hoard: HoardServer) -> None:
    base = f"/v2/clusters/{nano['id']}"
    config = _config(tenant, "legacy", {"shared_buffers": 96, "work_mem": 8192})
    assert _run(tenant, "PATCH", base, json={"configuration_id": config})["status"] == "succeeded"
    assert tenant.get(base).json()["pending_restart"] == ["shared_buffers"]
    _store_values(hoard, config, {"shared_buffers": 1048576, "work_mem": 8192})  # 1 TB
    assert _run(tenant, "POST", f"{base}/actions/stop")["status"] == "succeeded"
    for action in ("start", "restart"):
        op = _run(tenant, "POST", f"{base}/actions/{action}")
        assert op["status"] == "failed"
        assert "could not map anonymous shared memory" in op["error"], op["error"]
        assert "rolled back" in op["error"]
        cluster = tenant.get(base).json()
        assert cluster["status"] == "ACTIVE" and cluster["pending_restart"] == ["shared_buffers"]
        assert _show(tenant, nano["id"], "shared_buffers") == "64MB"  # what it ran with
        assert _show(tenant, nano["id"], "work_mem") == "8MB"  # applied live, kept
        kinds = [e["kind"] for e in tenant.get(f"{base}/events").json()["events"]]
        assert kinds[-2:] == ["cluster.rolled_back", "operation.failed"]
    # No crash loop: the observer leaves the server that runs alone.
    pid = node_pid(hoard, nano["members"][0]["id"])
    time.sleep(2)
    assert node_pid(hoard, nano["members"][0]["id"]) == pid
    assert tenant.get(base).json()["status"] == "ACTIVE"
    _run(tenant, "PATCH", base, json={"configuration_id": None})


def test_a_configuration_being_attached_cannot_change() -> None:
    """The workflow that attaches a configuration reads its values after the API
    checked them: until it ends they cannot be edited (past the bounds) or deleted."""
    with hoard_server({"HOARD_PAUSE_STEP": "apply settings"}) as server, \
            server.client() as client:
        cluster = create_cluster(client, "attaching", storage_gb=1)
        config = _config(client, "attached-soon", {"work_mem": 8192})
        response = client.patch(f"/v2/clusters/{cluster['id']}",
                                json={"configuration_id": config})
        assert response.status_code == 202, response.text
        assert_problem(client.patch(f"/v2/configurations/{config}", json={
            "values": {"max_wal_size": 4096}}), 409, "attached")
        assert_problem(client.delete(f"/v2/configurations/{config}"), 409, "attached")
        op = wait_operation(client, response.json()["operation"]["id"])
        assert op["status"] == "succeeded", op["error"]
        assert client.get(f"/v2/configurations/{config}").json()["values"] == {"work_mem": 8192}
        delete_cluster(client, cluster["id"])


def test_a_cluster_starts_with_its_configuration(
        tenant: httpx.Client, admin: httpx.Client, hoard: HoardServer) -> None:
    """A configuration given at create is what the servers start with (no restart
    waiting); one that is not the project's, not for the engine, or too big for the
    size is refused before anything is made."""
    config = _config(tenant, "from-the-start", {"max_connections": 40, "work_mem": 8192})
    big = _config(tenant, "too-big-for-nano", {"shared_buffers": 200})
    before = tenant.get("/v2/clusters").json()["clusters"]
    body = {"name": "configured", "engine": "postgresql", "size": "nano", "storage_gb": 1}
    assert_problem(tenant.post("/v2/clusters", json={**body, "configuration_id": big}), 422,
                   "shared_buffers: 200 MB does not fit a nano node")
    assert_problem(tenant.post("/v2/clusters", json={**body, "configuration_id": "x/../y"}),
                   422, "not an id")
    assert_problem(tenant.post("/v2/clusters", json={
        **body, "engine": "mariadb", "configuration_id": config}), 422,
        "is for postgresql")
    with hoard.client(new_tenant(admin, f"stranger-{time.monotonic_ns()}")) as stranger:
        assert_problem(stranger.post("/v2/clusters", json={**body, "configuration_id": config}),
                       404, "no configuration")
    assert tenant.get("/v2/clusters").json()["clusters"] == before
    made = create_cluster(tenant, "configured", storage_gb=1, configuration_id=config)
    try:
        assert (made["configuration_id"], made["pending_restart"]) == (config, [])
        assert (_show(tenant, made["id"], "max_connections"),
                _show(tenant, made["id"], "work_mem")) == ("40", "8MB")
        assert tenant.get(f"/v2/configurations/{config}").json()["clusters"] == [made["id"]]
        assert_problem(tenant.delete(f"/v2/configurations/{config}"), 409, "attached")
    finally:
        delete_cluster(tenant, made["id"])


def test_editing_an_attached_configuration_changes_every_cluster(
        tenant: httpx.Client, nano: dict[str, Any]) -> None:
    """An edit reaches every attached cluster through its update (dynamic settings
    live, the others pending a restart); one that does not fit a cluster changes
    nothing anywhere."""
    config = _config(tenant, "shared", {"work_mem": 8192})
    other = create_cluster(tenant, "sharing", storage_gb=1, configuration_id=config)
    base = f"/v2/clusters/{nano['id']}"
    try:
        _run(tenant, "PATCH", base, json={"configuration_id": config})
        events = tenant.get(f"/v2/clusters/{other['id']}/events").json()["events"]
        assert_problem(tenant.patch(f"/v2/configurations/{config}", json={
            "values": {"shared_buffers": 200}}), 422, "shared_buffers: 200 MB does not fit")
        assert tenant.get(f"/v2/configurations/{config}").json()["values"] == {"work_mem": 8192}
        assert tenant.get(f"/v2/clusters/{other['id']}/events").json()["events"] == events

        waiting = {c: tenant.get(f"/v2/clusters/{c}").json()["pending_restart"]
                   for c in (nano["id"], other["id"])}
        edited = tenant.patch(f"/v2/configurations/{config}", json={
            "values": {"work_mem": 16384, "max_connections": 60}})
        assert edited.status_code == 200, edited.text
        ops = edited.json()["operations"]
        assert sorted(op["cluster_id"] for op in ops) == sorted([nano["id"], other["id"]])
        for op in ops:
            assert wait_operation(tenant, op["id"])["status"] == "succeeded"
        for cluster_id in (nano["id"], other["id"]):
            shown = tenant.get(f"/v2/clusters/{cluster_id}").json()
            assert (shown["status"], shown["pending_restart"]) == (
                "ACTIVE", sorted({*waiting[cluster_id], "max_connections"}))
            assert (_show(tenant, cluster_id, "work_mem"),
                    _show(tenant, cluster_id, "max_connections")) == ("16MB", "50")
        _run(tenant, "POST", f"/v2/clusters/{other['id']}/actions/restart")
        assert _show(tenant, other["id"], "max_connections") == "60"
        assert tenant.get(f"/v2/clusters/{other['id']}").json()["pending_restart"] == []
        # Nothing to apply: no operation.
        same = tenant.patch(f"/v2/configurations/{config}", json={
            "values": {"work_mem": 16384, "max_connections": 60}})
        assert same.status_code == 200 and same.json()["operations"] == []
    finally:
        delete_cluster(tenant, other["id"])
        _run(tenant, "PATCH", base, json={"configuration_id": None})
        _run(tenant, "POST", f"{base}/actions/restart")


def test_an_edit_waits_for_no_busy_cluster() -> None:
    """One attached cluster busy: the edit is refused whole, the others untouched."""
    with hoard_server({"HOARD_PAUSE_STEP": "apply settings"}) as server, \
            server.client() as client:
        config = _config(client, "shared-busy", {"work_mem": 8192})
        busy = create_cluster(client, "busy", storage_gb=1, configuration_id=config)
        idle = create_cluster(client, "idle", storage_gb=1, configuration_id=config)
        events = client.get(f"/v2/clusters/{idle['id']}/events").json()["events"]
        resize = client.patch(f"/v2/clusters/{busy['id']}", json={"storage_gb": 2})
        assert resize.status_code == 202, resize.text
        assert_problem(client.patch(f"/v2/configurations/{config}", json={
            "values": {"work_mem": 4096}}), 409, "'busy' is busy")
        assert client.get(f"/v2/configurations/{config}").json()["values"] == {"work_mem": 8192}
        assert client.get(f"/v2/clusters/{idle['id']}/events").json()["events"] == events
        assert client.get(f"/v2/clusters/{idle['id']}").json()["status"] == "ACTIVE"
        assert wait_operation(client, resize.json()["operation"]["id"])["status"] == "succeeded"
        for made in (busy, idle):
            delete_cluster(client, made["id"])


def test_an_edit_that_cannot_be_applied_says_what_waits() -> None:
    """A cluster that cannot take an edit keeps its previous settings and says
    which wait for its next restart; the restart applies them."""
    with hoard_server({"HOARD_FAIL_STEP": "apply settings"}) as server, \
            server.client() as client:
        config = _config(client, "unlucky", {"work_mem": 8192})
        made = create_cluster(client, "unlucky", storage_gb=1, configuration_id=config)
        edited = client.patch(f"/v2/configurations/{config}", json={"values": {"work_mem": 16384}})
        assert edited.status_code == 200, edited.text
        op = wait_operation(client, edited.json()["operations"][0]["id"])
        assert op["status"] == "failed"
        assert op["error"].endswith("the servers keep their previous settings: work_mem "
                                    "applies at the next restart"), op["error"]
        shown = client.get(f"/v2/clusters/{made['id']}").json()
        assert (shown["status"], shown["pending_restart"]) == ("ACTIVE", ["work_mem"])
        assert _show(client, made["id"], "work_mem") == "8MB"
        _run(client, "POST", f"/v2/clusters/{made['id']}/actions/restart")
        assert _show(client, made["id"], "work_mem") == "16MB"
        assert client.get(f"/v2/clusters/{made['id']}").json()["pending_restart"] == []
        delete_cluster(client, made["id"])
