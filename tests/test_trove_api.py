"""The Trove v1.0 API driven by Trove's own clients (python-troveclient and the
``openstack database`` CLI) against a real Hoard and real databases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from keystoneauth1 import session, token_endpoint
from troveclient.v1 import client as trove_client

from tests.conftest import HoardServer, ca_file_for, hoard_server, new_tenant
from tests.engine_clients import PROBES

PASSWORD = "correct-horse-battery"
pytestmark = pytest.mark.timeout(240)


class Tenant:
    """A project, its token, and the Trove endpoint of its project."""

    def __init__(self, server: HoardServer, name: str) -> None:
        with server.client() as admin:
            self.token = new_tenant(admin, name)
            projects = admin.get("/v2/projects").json()
        self.project_id = next(p["id"] for p in projects if p["name"] == name)
        self.server = server
        self.url = f"{server.url}/v1.0/{self.project_id}"
        auth = token_endpoint.Token(self.url, self.token)
        self.trove = trove_client.Client(session=session.Session(auth=auth))
        self.http = httpx.Client(base_url=self.url, timeout=60,
                                 headers={"X-Auth-Token": self.token})
        self.ca_file: Path = ca_file_for(server.client(self.token))

    def cli(self, *args: str) -> Any:
        """``openstack database ...`` as a subprocess; its JSON output."""
        openstack = str(Path(sys.executable).with_name("openstack"))
        done = subprocess.run(
            [openstack, "--os-auth-type", "admin_token", "--os-token", self.token,
             "--os-endpoint", self.url, "database", *args, "-f", "json"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "OS_CLOUD": ""})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    with hoard_server() as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: HoardServer) -> Tenant:
    return Tenant(server, "trove-tenant")


def until(what: Callable[[], Any], timeout: float = 90, step: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"still waiting after {timeout}s")


def wait_status(t: Tenant, instance_id: str, wanted: str = "ACTIVE",
                timeout: float = 120) -> Any:
    def reached() -> Any:
        instance = t.trove.instances.get(instance_id)
        assert instance.status != "ERROR", instance._info
        return instance if instance.status == wanted else None
    return until(reached, timeout)


def sql(engine: str, host: str, port: int, user: str, password: str, database: str,
        query: str, ca_file: Path) -> str:
    """One query through the engine's own command-line client."""
    if engine == "postgresql":
        argv = [shutil.which("psql") or "psql", "-XAtq", "-c", query,
                f"host={host} port={port} user={user} dbname={database} "
                f"sslmode=verify-ca sslrootcert={ca_file} connect_timeout=10"]
        env = {**os.environ, "PGPASSWORD": password}
    else:
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        argv = [client, "-h", host, "-P", str(port), "-u", user, f"--ssl-ca={ca_file}",
                "-N", "-B", "-e", query, database]
        env = {**os.environ, "MYSQL_PWD": password}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


STANDARD_PORT = {"postgresql": 5432, "mariadb": 3306}


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_instance_lifecycle(tenant: Tenant, engine: str) -> None:
    t = tenant
    trove = t.trove
    assert engine in [d.name for d in trove.datastores.list()]
    versions = trove.datastore_versions.list(engine)
    assert versions
    config = trove.configurations.create(f"{engine}-conf", json.dumps({}), datastore=engine)
    instance = trove.instances.create(
        f"{engine}-one", "nano", volume={"size": 1}, datastore=engine,
        datastore_version=versions[0].name,
        databases=[{"name": "shop"}],
        users=[{"name": "alice", "password": PASSWORD, "databases": [{"name": "shop"}]}],
        nics=[], availability_zone=None, modules=[])
    assert instance.status == "BUILD"
    instance = wait_status(t, instance.id)
    assert instance.datastore == {"type": engine, "version": versions[0].name}
    assert instance.flavor["id"] == "nano" and instance.volume["size"] == 1
    host, port = instance.ip[0], instance.addresses[0]["port"]
    assert port == STANDARD_PORT[engine] and instance.hostname == host

    # Databases and users of the request are made before the instance is ACTIVE.
    assert "alice" in [u.name for u in trove.users.list(instance.id)]
    assert "shop" in [d.name for d in trove.databases.list(instance.id)]
    assert sql(engine, host, port, "alice", PASSWORD, "shop", "SELECT 1", t.ca_file) == "1"
    listed = t.cli("db", "list", instance.id)
    assert "shop" in [row["Name"] for row in listed]
    assert instance.id in [row["ID"] for row in t.cli("instance", "list")]

    # A new password and a grant, both through Trove's user calls.
    trove.databases.create(instance.id, [{"name": "ledger"}])
    trove.users.update_attributes(instance.id, "alice", {"password": PASSWORD + "-2"})
    trove.users.grant(instance.id, "alice", ["ledger"])
    assert sql(engine, host, port, "alice", PASSWORD + "-2", "ledger", "SELECT 2",
               t.ca_file) == "2"

    # Root is the tenant's admin account, never a superuser.
    name, password = trove.root.create_instance_root(instance.id)
    assert name != "root" and password
    assert sql(engine, host, port, name, password, "shop", "SELECT 3", t.ca_file) == "3"
    assert trove.root.is_instance_root_enabled(instance.id).rootEnabled is True
    # Enabling root again gives the account a new password, as Trove does.
    again, rotated = trove.root.create_instance_root(instance.id)
    assert again == name and rotated != password
    assert sql(engine, host, port, name, rotated, "shop", "SELECT 3", t.ca_file) == "3"
    with pytest.raises(AssertionError):
        sql(engine, host, port, name, password, "shop", "SELECT 3", t.ca_file)

    trove.instances.modify(instance.id, config.id)
    until(lambda: trove.instances.get(instance.id)._info.get("configuration"))
    wait_status(t, instance.id)
    assert [i["id"] for i in t.http.get(f"/configurations/{config.id}/instances")
            .json()["instances"]] == [instance.id]
    # Editing an attached configuration applies to its instances, as in Trove.
    name, value, shown = PROBES[engine].dynamic
    edited = t.http.patch(f"/configurations/{config.id}",
                          json={"configuration": {"values": {name: value}}})
    assert edited.status_code == 200, edited.text
    assert trove.configurations.get(config.id).values == {name: value}
    with t.server.client(t.token) as v2:  # the update runs while Trove shows ACTIVE
        until(lambda: v2.get(f"/v2/clusters/{instance.id}").json()["status"] == "ACTIVE")
    setting = {"postgresql": f"SHOW {name}", "mariadb": f"SELECT @@{name}"}[engine]
    assert sql(engine, host, port, "alice", PASSWORD + "-2", "shop", setting,
               t.ca_file) == shown

    backup = trove.backups.create("nightly", instance.id)
    assert backup.status in ("NEW", "BUILDING")
    until(lambda: trove.backups.get(backup.id).status == "COMPLETED")
    assert backup.id in [b.id for b in trove.instances.backups(instance.id)]
    assert backup.id in [row["ID"] for row in t.cli("backup", "list")]
    shown = t.cli("instance", "show", instance.id)
    assert shown["status"] == "ACTIVE" and shown["datastore"] == engine
    wait_status(t, instance.id)

    restored = trove.instances.create(f"{engine}-two", "nano", volume={"size": 1},
                                      datastore=engine, restorePoint={"backupRef": backup.id},
                                      configuration=config.id)
    trove.instances.resize_instance(instance.id, "small")
    page = t.http.get("/instances", params={"limit": 1}).json()
    assert len(page["instances"]) == 1 and page["links"][0]["rel"] == "next"
    marker = page["instances"][0]["id"]
    rest = t.http.get("/instances", params={"limit": 50, "marker": marker}).json()
    assert marker not in [i["id"] for i in rest["instances"]] and rest["instances"]
    restored = wait_status(t, restored.id)
    assert restored.configuration["id"] == config.id
    assert sql(engine, restored.ip[0], restored.addresses[0]["port"], "alice",
               PASSWORD + "-2", "shop", "SELECT 4", t.ca_file) == "4"

    wait_status(t, instance.id)
    trove.instances.resize_volume(instance.id, 2)
    resized = wait_status(t, instance.id)
    assert resized.flavor["id"] == "small" and resized.volume["size"] == 2
    trove.instances.restart(instance.id)
    wait_status(t, instance.id)

    trove.instances.modify(instance.id)  # no configuration: detach
    until(lambda: "configuration" not in trove.instances.get(instance.id)._info)
    wait_status(t, instance.id)
    for doomed in (instance.id, restored.id):
        trove.instances.delete(doomed)
    until(lambda: not {instance.id, restored.id} & {i.id for i in trove.instances.list()})
    trove.backups.delete(backup.id)
    trove.configurations.delete(config.id)


def fault(key: str, code: int, message: str) -> dict[str, Any]:
    return {key: {"code": code, "message": message}}


GOOD = {"name": "fine", "flavorRef": "nano", "volume": {"size": 1},
        "datastore": {"type": "postgresql"}}


@pytest.mark.parametrize(("change", "status", "body"), [
    ({"flavorRef": "huge"}, 404,
     fault("itemNotFound", 404, "Resource Flavor 'huge' cannot be found.")),
    ({"name": "Bad Name!"}, 400,
     fault("badRequest", 400, "name: name 'Bad Name!' must match [a-z][a-z0-9-]{0,62}: a "
                              "lowercase letter, then letters, digits or '-'")),
    ({"volume": {"size": 0}}, 400,
     fault("badRequest", 400, "storage_gb: Input should be greater than or equal to 1")),
    ({"datastore": {"type": "oracle"}}, 404,
     fault("itemNotFound", 404, "Datastore 'oracle' cannot be found.")),
    ({"datastore": {"type": "postgresql", "version": "7.4"}}, 404,
     fault("itemNotFound", 404, "Datastore version '7.4' cannot be found.")),
    ({"users": [{"name": "bob", "password": "short"}]}, 400,
     fault("badRequest", 400, "a user's password must be 8 to 128 characters")),
    ({"databases": [{"name": "pg_bad"}]}, 400,
     fault("badRequest", 400, "database name 'pg_bad' is reserved")),
    ({"users": [{"name": "bob", "password": PASSWORD, "databases": [{"name": "nowhere"}]}]},
     400, fault("badRequest", 400, "user 'bob': no such database: nowhere")),
    ({"users": [{"name": "bob", "password": PASSWORD}, {"name": "bob", "password": PASSWORD}]},
     400, fault("badRequest", 400, "each user may be given once")),
    ({"configuration": "00000000-0000-4000-8000-000000000000"}, 404,
     fault("itemNotFound", 404, "no configuration '00000000-0000-4000-8000-000000000000'")),
])
def test_bad_instance_changes_nothing(tenant: Tenant, change: dict[str, Any], status: int,
                                      body: dict[str, Any]) -> None:
    answer = tenant.http.post("/instances", json={"instance": {**GOOD, **change}})
    assert (answer.status_code, answer.json()) == (status, body)
    assert "fine" not in [i["name"] for i in tenant.http.get("/instances").json()["instances"]]


def test_authentication_and_project(server: HoardServer, tenant: Tenant) -> None:
    no_token = httpx.get(tenant.url + "/instances")
    assert (no_token.status_code, no_token.json()) == (
        401, fault("unauthorized", 401, "send 'X-Auth-Token: <project token>'"))
    bad_token = httpx.get(tenant.url + "/instances", headers={"X-Auth-Token": "nope"})
    assert (bad_token.status_code, bad_token.json()) == (
        401, fault("unauthorized", 401, "the token is not valid"))
    other = tenant.http.get(f"{server.url}/v1.0/someone-else/instances")
    assert (other.status_code, other.json()) == (
        404, fault("itemNotFound", 404, "no project 'someone-else'"))
    # A /v2 bearer token is not read here, nor an X-Auth-Token by /v2.
    bearer = httpx.get(tenant.url + "/flavors",
                       headers={"Authorization": f"Bearer {tenant.token}"})
    assert bearer.status_code == 401
    assert httpx.get(server.url + "/v2/clusters",
                     headers={"X-Auth-Token": tenant.token}).status_code == 401


def test_catalog_versions_and_refusals(server: HoardServer, tenant: Tenant) -> None:
    versions = httpx.get(server.url + "/", headers={"Accept": "application/json"}).json()
    assert versions["versions"][0]["id"] == "v1.0"
    assert versions["versions"][0]["status"] == "CURRENT"
    assert httpx.get(server.url + "/v1.0/").json() == versions
    page = httpx.get(server.url + "/", headers={"Accept": "text/html"})  # the web console
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    flavors = {f.id: f for f in tenant.trove.flavors.list()}
    assert set(flavors) == {"nano", "small", "medium", "large"}
    assert flavors["small"].ram == 1024
    by_name = tenant.http.get("/datastores/postgresql").json()["datastore"]
    by_id = tenant.http.get(f"/datastores/{by_name['id']}").json()["datastore"]
    assert by_name == by_id
    version = by_name["versions"][0]
    parameters = tenant.http.get(
        f"/datastores/{by_name['id']}/versions/{version['id']}/parameters").json()
    assert "max_connections" in [p["name"] for p in parameters["configuration-parameters"]]
    limits = tenant.trove.limits.list()
    assert limits[0].max_instances >= 1
    assert tenant.http.get("/backup_strategies").json() == {"backup_strategies": []}
    clusters = tenant.http.get("/clusters")
    assert clusters.status_code == 501 and "notImplemented" in clusters.json()
    mgmt = tenant.http.get("/mgmt/instances")
    assert mgmt.status_code == 403 and "forbidden" in mgmt.json()
    flavors_cli = tenant.cli("flavor", "list")
    assert {row["Name"] for row in flavors_cli} == {"nano", "small", "medium", "large"}


def test_redis_instance(tenant: Tenant) -> None:
    """Redis has no databases: an instance with a user of Redis's default access, its
    admin account through root, and redis-cli on the standard port as both."""
    trove = tenant.trove
    instance = trove.instances.create("cache", "nano", volume={"size": 1}, datastore="redis",
                                      users=[{"name": "reader", "password": PASSWORD}])
    single = tenant.http.post(f"/instances/{instance.id}/action",
                              json={"promote_to_replica_source": {}})
    assert single.status_code == 400 and list(single.json()) == ["badRequest"]
    refused = tenant.http.post("/instances", json={"instance": {
        **GOOD, "name": "cache-two", "datastore": {"type": "redis"},
        "databases": [{"name": "shop"}]}})
    assert (refused.status_code, refused.json()) == (
        400, fault("badRequest", 400, "Redis has no databases"))
    instance = wait_status(tenant, instance.id)
    host, port = instance.ip[0], instance.addresses[0]["port"]
    assert port == 6379
    name, password = trove.root.create_instance_root(instance.id)
    done = subprocess.run(
        [shutil.which("redis-cli") or "redis-cli", "-h", host, "-p", str(port), "--tls",
         "--cacert", str(tenant.ca_file), "--user", name, "--pass", password,
         "--no-auth-warning", "PING"], capture_output=True, text=True, timeout=30,
        check=False)
    assert done.stdout.strip() == "PONG", done.stderr
    assert "reader" in [u.name for u in trove.users.list(instance.id)]
    done = subprocess.run(
        [shutil.which("redis-cli") or "redis-cli", "-h", host, "-p", str(port), "--tls",
         "--cacert", str(tenant.ca_file), "--user", "reader", "--pass", PASSWORD,
         "--no-auth-warning", "SET", "k", "v"], capture_output=True, text=True, timeout=30,
        check=False)
    assert done.stdout.strip() == "OK", done.stderr
    trove.instances.delete(instance.id)
    until(lambda: instance.id not in {i.id for i in trove.instances.list()})


def test_configuration_groups(tenant: Tenant) -> None:
    http = tenant.http
    made = http.post("/configurations", json={"configuration": {
        "name": "tuned", "values": {"max_connections": 100},
        "datastore": {"type": "postgresql"}}})
    assert made.status_code == 200, made.text
    config = made.json()["configuration"]
    assert config["values"] == {"max_connections": 100} and config["instance_count"] == 0
    assert config["id"] in [c.id for c in tenant.trove.configurations.list()]
    bad = http.patch(f"/configurations/{config['id']}",
                     json={"configuration": {"values": {"max_connections": 1}}})
    assert bad.status_code == 400 and list(bad.json()) == ["badRequest"]
    assert http.patch(f"/configurations/{config['id']}", json={"configuration": {
        "values": {"work_mem": 8192}}}).status_code == 200
    shown = tenant.trove.configurations.get(config["id"])
    assert shown.values == {"max_connections": 100, "work_mem": 8192}
    assert http.put(f"/configurations/{config['id']}", json={"configuration": {
        "values": {}}}).status_code == 202
    assert tenant.trove.configurations.get(config["id"]).values == {}
    unknown = http.post("/configurations", json={"configuration": {
        "name": "other", "values": {}, "datastore": {"type": "postgresql",
                                                    "version": "7.4"}}})
    assert (unknown.status_code, unknown.json()) == (
        404, fault("itemNotFound", 404, "Datastore version '7.4' cannot be found."))
    assert http.delete(f"/configurations/{config['id']}").status_code == 202
    assert http.get(f"/configurations/{config['id']}").status_code == 404


def test_replica_count_makes_a_replicated_instance(tenant: Tenant) -> None:
    trove = tenant.trove
    instance = trove.instances.create("replicated", "nano", volume={"size": 1},
                                      datastore="postgresql", replica_count=1)
    refused = tenant.http.post("/instances", json={"instance": {
        **GOOD, "name": "follower", "replica_of": instance.id}})
    assert refused.status_code == 400 and list(refused.json()) == ["badRequest"]
    instance = wait_status(tenant, instance.id, timeout=180)
    assert instance.replica_count == 1 and instance.ip
    eject = tenant.http.post(f"/instances/{instance.id}/action",
                             json={"eject_replica_source": {}})
    assert eject.status_code == 400 and list(eject.json()) == ["badRequest"]
    # promote_to_replica_source: a switchover to the replica, the address unchanged.
    with tenant.server.client(tenant.token) as v2:
        def primary() -> str:
            members = v2.get(f"/v2/clusters/{instance.id}").json()["members"]
            return next(m["id"] for m in members if m["role"] == "primary")
        before = primary()
        trove.instances.promote_to_replica_source(instance.id)
        until(lambda: v2.get(f"/v2/clusters/{instance.id}").json()["status"] == "ACTIVE"
              and primary() != before, timeout=120)
    assert wait_status(tenant, instance.id).ip == instance.ip
    trove.instances.delete(instance.id)
    until(lambda: instance.id not in {i.id for i in trove.instances.list()})


def test_accounts_of_a_create_survive_a_killed_worker() -> None:
    """The databases and users of a create are a step of its durable workflow: Hoard
    killed right after making them (before the step is recorded) and started again
    finishes the create with them, made once."""
    step = "create databases and users"
    with hoard_server({"HOARD_PAUSE_STEP": step}) as server:
        t = Tenant(server, "trove-crash")
        made = t.http.post("/instances", json={"instance": {
            **GOOD, "name": "survivor", "databases": [{"name": "shop"}],
            "users": [{"name": "alice", "password": PASSWORD,
                       "databases": [{"name": "shop"}]}]}})
        assert made.status_code == 200, made.text
        instance_id = made.json()["instance"]["id"]
        with server.client(t.token) as v2:
            op_id = v2.get(f"/v2/clusters/{instance_id}/events").json()[
                "events"][0]["operation_id"]
            until(lambda: any("paused" in s.get("detail", "") for s in v2.get(
                f"/v2/operations/{op_id}").json()["steps"] if s["name"] == step))
        server.kill9()
        server.env.pop("HOARD_PAUSE_STEP", None)
        server.start()
        instance = wait_status(t, instance_id)
        assert [u.name for u in t.trove.users.list(instance_id)] == ["alice"]
        assert sql("postgresql", instance.ip[0], instance.addresses[0]["port"], "alice",
                   PASSWORD, "shop", "SELECT 5", t.ca_file) == "5"
        t.trove.instances.delete(instance_id)
        until(lambda: instance_id not in {i.id for i in t.trove.instances.list()})
