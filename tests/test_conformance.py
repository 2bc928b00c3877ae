"""One conformance suite for every engine: the whole tenant lifecycle against
real servers through the API, and the bad inputs at each step.

A cluster per engine lives for the module; the tests run in file order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hoard.engines.registry import ENGINES
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    tenant_uri,
    wait_operation,
)
from tests.engine_clients import PROBES, show, write_read
from tests.test_cli import hoard_cli
from tests.test_lifecycle import assert_no_debris, filesystem_gb

ENGINE_NAMES = [name for name in ENGINES if name in PROBES]
INJECTIONS = ["x; drop table t", "a'b", 'a"b', "`x`", "Robert');--", "a b", "../x", "",
              "A" * 70, "x\x00y", "é"]


@pytest.fixture(scope="module", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def tenant_token(admin: httpx.Client) -> str:
    return new_tenant(admin, f"conform-{os.getpid()}")


@pytest.fixture(scope="module")
def tenant(hoard: HoardServer, tenant_token: str) -> Iterator[httpx.Client]:
    with hoard.client(tenant_token) as client:
        yield client


@pytest.fixture(scope="module")
def cluster(tenant: httpx.Client, engine: str, hoard: HoardServer) -> Iterator[dict[str, Any]]:
    made = create_cluster(tenant, f"conform-{engine}", engine=engine)
    yield made
    if tenant.get(f"/v2/clusters/{made['id']}").status_code == 200:
        delete_cluster(tenant, made["id"])


def uri_of(client: httpx.Client, cluster: dict[str, Any]) -> str:
    return tenant_uri(client, cluster["id"])


def run(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Call a change and wait for its operation to succeed."""
    response = client.request(method, path, **kwargs)
    assert response.status_code in (200, 201, 202), response.text
    body = response.json()
    op = wait_operation(client, body["operation"]["id"])
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    return dict(body)


def current(client: httpx.Client, cluster: dict[str, Any]) -> dict[str, Any]:
    return dict(client.get(f"/v2/clusters/{cluster['id']}").json())


def test_connect_write_read(hoard: HoardServer, tenant: httpx.Client, engine: str,
                            cluster: dict[str, Any]) -> None:
    assert cluster["status"] == "ACTIVE" and cluster["engine"] == engine
    assert write_read(engine, uri_of(tenant, cluster)) == "ok"
    creds = tenant.get(f"/v2/clusters/{cluster['id']}/credentials").json()
    assert creds["connect_command"]["argv"][0] == ENGINES[engine].client_binary
    assert creds["password"] not in " ".join(creds["connect_command"]["argv"])
    # Usable from anywhere: no path of Hoard's host, the CA comes from ca_cert_url.
    assert not any(p in creds["uri"] for p in ("ssl_ca", "sslrootcert", str(hoard.state_dir)))
    assert creds["ca_cert_url"].endswith("/v2/ca.pem")


CLIENT_SESSIONS = {  # what to type into each engine's own client, and what it answers
    "postgresql": ("SELECT 'conn=' || 1;\n", "conn=1"),
    "mariadb": ("SELECT CONCAT('conn=', 1);\n", "conn=1"),
    "redis": ("PING\n", "PONG"),
}


def test_hoard_connect_opens_the_engine_client(
    hoard: HoardServer, tenant_token: str, engine: str, cluster: dict[str, Any]
) -> None:
    typed, answer = CLIENT_SESSIONS[engine]
    session = hoard_cli(hoard, tenant_token, "connect", cluster["name"], stdin=typed)
    assert session.returncode == 0, session.stderr
    assert answer in session.stdout


def test_accounts(tenant: httpx.Client, engine: str, cluster: dict[str, Any]) -> None:
    base = f"/v2/clusters/{cluster['id']}"
    uri = uri_of(tenant, cluster)
    if engine == "redis":
        made = run(tenant, "POST", f"{base}/users",
                   json={"name": "worker", "keys": ["app:*"], "categories": ["read", "write"]})
        password = made["user"]["password"]
        assert write_read(engine, uri, "worker", password, key="app:1") == "ok"
        with pytest.raises(Exception, match=r"(?i)permission|NOPERM"):
            write_read(engine, uri, "worker", password, key="other:1")
        users = tenant.get(f"{base}/users").json()["users"]
        assert [(u["name"], u["keys"]) for u in users] == [("worker", ["app:*"])]
        assert tenant.get(f"{base}/databases").status_code == 422
    else:
        made = run(tenant, "POST", f"{base}/databases",
                   json={"name": "shop", "user": {"name": "clerk"}})
        password = made["user"]["password"]
        assert write_read(engine, uri, "clerk", password, database="shop") == "ok"
        assert "shop" in [d["name"] for d in tenant.get(f"{base}/databases").json()["databases"]]
        users = tenant.get(f"{base}/users").json()["users"]
        assert [(u["name"], u["databases"]) for u in users] == [("clerk", ["shop"])]
        run(tenant, "DELETE", f"{base}/users/clerk/databases/shop")
        with pytest.raises(Exception):  # noqa: B017 - each driver raises its own error
            write_read(engine, uri, "clerk", password, database="shop")
        run(tenant, "PUT", f"{base}/users/clerk/databases/shop")
        assert write_read(engine, uri, "clerk", password, database="shop") == "ok"
        plain = run(tenant, "POST", f"{base}/databases", json={"name": "plain"})
        assert plain["user"] is None
        assert write_read(engine, uri, database="plain") == "ok"  # the admin reaches it
        run(tenant, "DELETE", f"{base}/databases/plain")
    rotated = run(tenant, "POST", f"{base}/users/{made['user']['name']}/actions/rotate-password")
    new_password = rotated["user"]["password"]
    assert new_password != password
    target = {"database": "shop"} if engine != "redis" else {"key": "app:2"}
    assert write_read(engine, uri, made["user"]["name"], new_password, **target) == "ok"
    with pytest.raises(Exception):  # noqa: B017
        write_read(engine, uri, made["user"]["name"], password, **target)
    run(tenant, "DELETE", f"{base}/users/{made['user']['name']}")
    assert tenant.get(f"{base}/users").json()["users"] == []
    if engine != "redis":
        run(tenant, "DELETE", f"{base}/databases/shop")


def test_admin_password_rotation(tenant: httpx.Client, engine: str,
                                 cluster: dict[str, Any]) -> None:
    """The admin account gets a new password: shown once, then by the credentials;
    the old one stops working."""
    base = f"/v2/clusters/{cluster['id']}"
    before = tenant.get(f"{base}/credentials").json()
    old_uri = uri_of(tenant, cluster)
    rotated = run(tenant, "POST", f"{base}/credentials/actions/rotate")
    after = tenant.get(f"{base}/credentials").json()
    assert rotated["user"]["name"] == after["username"] == before["username"]
    assert rotated["user"]["password"] == after["password"] != before["password"]
    assert write_read(engine, uri_of(tenant, cluster)) == "ok"
    with pytest.raises(Exception):  # noqa: B017 - each driver raises its own error
        write_read(engine, old_uri)
    ghost = tenant.post("/v2/clusters/00000000-0000-4000-8000-000000000000/credentials/"
                        "actions/rotate")
    assert ghost.status_code == 404


@pytest.mark.parametrize("name", INJECTIONS)
def test_bad_names_are_rejected_before_any_work(
    tenant: httpx.Client, engine: str, cluster: dict[str, Any], name: str
) -> None:
    base = f"/v2/clusters/{cluster['id']}"
    before = tenant.get(f"{base}/users").json()
    response = tenant.post(f"{base}/users", json={"name": name})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if engine != "redis":
        response = tenant.post(f"{base}/databases", json={"name": name})
        assert response.status_code == 422, response.text
    assert tenant.get(f"{base}/users").json() == before


def test_bad_account_requests(tenant: httpx.Client, engine: str, cluster: dict[str, Any]
                              ) -> None:
    base = f"/v2/clusters/{cluster['id']}"
    if engine == "redis":
        for body in ({"name": "u", "categories": ["admin"]},
                     {"name": "u", "categories": ["dangerous"]},
                     {"name": "u", "categories": ["all"]},
                     {"name": "u", "keys": ["app:* +@all"]},
                     {"name": "u", "keys": [">password"]},
                     {"name": "u", "databases": ["x"]},
                     {"name": "default"}, {"name": "admin"}):
            assert tenant.post(f"{base}/users", json=body).status_code == 422, body
    else:
        for body in ({"name": "db1", "charset": "klingon"},
                     {"name": "db1", "collation": "x' OR '1"},
                     {"name": "mysql"} if engine == "mariadb" else {"name": "postgres"},
                     {"name": "db1", "user": {"name": "admin"}}):
            assert tenant.post(f"{base}/databases", json=body).status_code == 422, body
        assert tenant.post(f"{base}/users", json={"name": "u1", "keys": ["*"]}
                           ).status_code == 422
        missing = tenant.post(f"{base}/users", json={"name": "u1", "databases": ["nope"]})
        assert missing.status_code == 422 and "nope" in missing.json()["detail"]
    assert tenant.delete(f"{base}/users/ghost").status_code == 404
    assert tenant.post(f"{base}/users/ghost/actions/rotate-password").status_code == 404
    assert tenant.get(f"{base}/users").json()["users"] == []


def test_configuration_dynamic_and_restart_required(
    tenant: httpx.Client, engine: str, cluster: dict[str, Any]
) -> None:
    probe = PROBES[engine]
    (dyn, dyn_value, dyn_shown), (rst, rst_value, rst_shown) = probe.dynamic, probe.restart
    bad = [{dyn: "not-a-number" if isinstance(dyn_value, int) else 12345},
           {"no_such_parameter": 1}, {rst: 10**12} if isinstance(rst_value, int) else {rst: 1}]
    for values in bad:
        response = tenant.post("/v2/configurations", json={
            "name": f"bad-{engine}", "engine": engine, "values": values})
        assert response.status_code == 422, (values, response.text)
    config = tenant.post("/v2/configurations", json={
        "name": f"tuned-{engine}", "engine": engine, "values": {dyn: dyn_value, rst: rst_value}})
    assert config.status_code == 201, config.text
    config_id = config.json()["id"]
    run(tenant, "PATCH", f"/v2/clusters/{cluster['id']}", json={"configuration_id": config_id})
    uri = uri_of(tenant, cluster)
    assert show(engine, uri, dyn) == dyn_shown  # applied live
    state = current(tenant, cluster)
    assert state["pending_restart"] == [rst] and state["configuration_id"] == config_id
    assert tenant.delete(f"/v2/configurations/{config_id}").status_code == 409
    # An edit reaches the cluster (tests/test_resource_guards.py); a bad one changes nothing.
    assert tenant.patch(f"/v2/configurations/{config_id}", json={
        "values": {"no_such_parameter": 1}}).status_code == 422
    assert current(tenant, cluster)["status"] == "ACTIVE"
    run(tenant, "POST", f"/v2/clusters/{cluster['id']}/actions/restart")
    assert show(engine, uri, rst) == rst_shown
    assert current(tenant, cluster)["pending_restart"] == []
    kinds = [e["kind"] for e in tenant.get(f"/v2/clusters/{cluster['id']}/events"
                                           ).json()["events"]]
    assert "cluster.restart_required" in kinds
    run(tenant, "PATCH", f"/v2/clusters/{cluster['id']}", json={"configuration_id": None})
    assert tenant.delete(f"/v2/configurations/{config_id}").status_code == 204


def test_resize(tenant: httpx.Client, engine: str, cluster: dict[str, Any],
                hoard: HoardServer) -> None:
    setting = PROBES[engine].memory_setting
    uri = uri_of(tenant, cluster)
    before = show(engine, uri, setting)
    assert tenant.patch(f"/v2/clusters/{cluster['id']}", json={"size": "huge"}
                        ).status_code == 422
    assert tenant.patch(f"/v2/clusters/{cluster['id']}", json={"storage_gb": 1}
                        ).status_code == 422
    assert tenant.patch(f"/v2/clusters/{cluster['id']}", json={}).status_code == 422
    run(tenant, "PATCH", f"/v2/clusters/{cluster['id']}", json={"size": "small",
                                                                "storage_gb": 20})
    state = current(tenant, cluster)
    assert (state["size"], state["storage_gb"], state["status"]) == ("small", 20, "ACTIVE")
    assert state["members"][0]["limits"]["memory"].startswith("1024 MiB")
    if "enforced (" in state["members"][0]["limits"]["storage"]:
        assert 19 < filesystem_gb(hoard, state["members"][0]["id"]) <= 20
    assert show(engine, uri, setting) != before
    assert write_read(engine, uri) == "ok"


def test_stop_start_restart(tenant: httpx.Client, engine: str, cluster: dict[str, Any]) -> None:
    base = f"/v2/clusters/{cluster['id']}"
    assert tenant.post(f"{base}/actions/start").status_code == 409  # already running
    assert tenant.post(f"{base}/actions/explode").status_code == 422
    run(tenant, "POST", f"{base}/actions/stop")
    assert current(tenant, cluster)["status"] == "STOPPED"
    time.sleep(1.5)  # the observer must not bring a stopped cluster back
    assert current(tenant, cluster)["status"] == "STOPPED"
    assert tenant.post(f"{base}/actions/restart").status_code == 409
    assert tenant.get(f"{base}/credentials").status_code == 409
    run(tenant, "POST", f"{base}/actions/start")
    assert write_read(engine, uri_of(tenant, cluster)) == "ok"  # data kept
    run(tenant, "POST", f"{base}/actions/restart")
    assert current(tenant, cluster)["status"] == "ACTIVE"


def test_delete_leaves_nothing(tenant: httpx.Client, engine: str, cluster: dict[str, Any],
                               hoard: HoardServer) -> None:
    node = current(tenant, cluster)["members"][0]
    delete_cluster(tenant, cluster["id"])
    assert_no_debris(hoard, [node["id"]], [(node["host"], node["port"])])


@pytest.mark.parametrize("engine", [e for e in ENGINE_NAMES if e != "redis"])
def test_half_made_database_and_user_leave_neither(engine: str) -> None:
    with hoard_server({"HOARD_FAIL_STEP": "grant access"}) as server, server.client() as client:
        made = create_cluster(client, "halfway", engine=engine)
        base = f"/v2/clusters/{made['id']}"
        response = client.post(f"{base}/databases", json={"name": "shop",
                                                          "user": {"name": "clerk"}})
        assert response.status_code == 500, response.text
        assert "injected failure" in response.json()["detail"]
        assert "shop" not in [d["name"] for d in client.get(f"{base}/databases").json()[
            "databases"]]
        assert client.get(f"{base}/users").json()["users"] == []
        kinds = [e["kind"] for e in client.get(f"{base}/events").json()["events"]]
        assert "operation.undone" in kinds
        delete_cluster(client, made["id"])
