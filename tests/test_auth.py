"""Authentication, admin-only calls, tenant isolation, secrets at rest, and the
credentials a tenant gets for its database."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import (
    ADMIN_TOKEN,
    HoardServer,
    ca_file_for,
    make_state_dir,
    tenant_uri,
    wait_operation,
)

PROBLEM = "application/problem+json"
VALID = {"name": "good-name", "engine": "postgresql", "size": "nano"}


# --- helpers -----------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_project(admin: httpx.Client, prefix: str) -> tuple[str, str]:
    """A fresh project and a token for it: (project id, token)."""
    project = admin.post("/v2/projects", json={"name": unique(prefix)})
    assert project.status_code == 201, project.text
    project_id = str(project.json()["id"])
    token = admin.post(f"/v2/projects/{project_id}/tokens", json={})
    assert token.status_code == 201, token.text
    return project_id, str(token.json()["token"])


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM, response.headers
    body = response.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status, body
    assert body["title"] and body["detail"], body
    for needle in mentions:
        assert needle.lower() in body["detail"].lower(), (needle, body)
    return dict(body)


def store_rows(server: HoardServer, table: str) -> list[tuple[Any, ...]]:
    """Rows of a table in the SQLite state store, read directly (read-only)."""
    uri = f"file:{server.state_dir / 'state.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        return list(db.execute(f"SELECT * FROM {table}"))


def state_files_bytes(server: HoardServer) -> dict[str, bytes]:
    """Every file at the top of the state directory (stores, WALs, log, keys)."""
    return {p.name: p.read_bytes() for p in server.state_dir.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def tenants(hoard: HoardServer, admin: httpx.Client) -> Iterator[dict[str, Any]]:
    """Tenant A with one real ACTIVE cluster, and tenant B with none."""
    a_id, a_token = make_project(admin, "tenant-a")
    b_id, b_token = make_project(admin, "tenant-b")
    with hoard.client(a_token) as a, hoard.client(b_token) as b:
        response = a.post("/v2/clusters", json={**VALID, "name": "secret-db"})
        assert response.status_code == 202, response.text
        cluster_id = response.json()["cluster"]["id"]
        op_id = response.json()["operation"]["id"]
        try:
            op = wait_operation(a, op_id)
            assert op["status"] == "succeeded", op
            yield {"a": a, "b": b, "a_id": a_id, "b_id": b_id, "a_token": a_token,
                   "b_token": b_token, "cluster_id": cluster_id, "op_id": op_id}
        finally:
            wait_operation(a, op_id)
            delete = a.delete(f"/v2/clusters/{cluster_id}")
            assert delete.status_code == 202, delete.text
            done = wait_operation(a, delete.json()["operation"]["id"])
            assert done["status"] == "succeeded", done


# --- authentication --------------------------------------------------------------

# An id no cluster or operation has (fixed: test ids must be the same in every
# collection, as parallel runners compare them).
UNKNOWN_ID = "5f0d7e3c-2a41-4b8e-9c6d-1e2f3a4b5c6d"

ENDPOINTS = [
    ("GET", "/v2/clusters"),
    ("POST", "/v2/clusters"),
    ("GET", f"/v2/clusters/{UNKNOWN_ID}"),
    ("GET", f"/v2/clusters/{UNKNOWN_ID}/credentials"),
    ("DELETE", f"/v2/clusters/{UNKNOWN_ID}"),
    ("GET", f"/v2/operations/{UNKNOWN_ID}"),
    ("GET", "/v2/engines"),
    ("GET", "/v2/sizes"),
    ("GET", "/v2/projects"),
    ("POST", "/v2/projects"),
    ("GET", f"/v2/projects/{UNKNOWN_ID}"),
    ("POST", f"/v2/projects/{UNKNOWN_ID}/tokens"),
]

BAD_HEADERS = [
    pytest.param(None, id="none"),
    pytest.param("Bearer wrong", id="bearer-wrong"),
    pytest.param("Basic xxx", id="basic"),
    pytest.param(f"Basic {ADMIN_TOKEN}", id="basic-with-admin-token"),
    pytest.param("Bearer", id="bearer-no-token"),
    pytest.param("Bearer null", id="bearer-null"),
    pytest.param(ADMIN_TOKEN, id="token-without-scheme"),
    pytest.param(f"Token {ADMIN_TOKEN}", id="other-scheme"),
    pytest.param(f"Bearer {ADMIN_TOKEN}x", id="admin-token-plus-char"),
    pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", id="admin-token-prefix"),
    pytest.param(f"Bearer {hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()}",
                 id="token-hash-as-token"),
]


@pytest.mark.parametrize("header", BAD_HEADERS)
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_bad_credentials_are_401(hoard: HoardServer, header: str | None, method: str,
                                 path: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    body = {**VALID, "name": unique("x")} if method == "POST" else None
    response = httpx.request(method, hoard.url + path, headers=headers, json=body, timeout=30)
    assert_problem(response, 401)
    assert response.json()["title"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unauthenticated_posts_create_nothing(hoard: HoardServer, admin: httpx.Client) -> None:
    name = unique("sneaky")
    for header in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(hoard.url + "/v2/projects", json={"name": name}, headers=header)
        assert_problem(response, 401)
    assert name not in {p["name"] for p in admin.get("/v2/projects").json()}


def test_scheme_is_case_insensitive(hoard: HoardServer) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = httpx.get(hoard.url + "/v2/sizes",
                             headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"})
        assert response.status_code == 200, (scheme, response.text)


def test_tenant_cannot_do_admin_calls(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "plain")
    other_id, _ = make_project(admin, "neighbour")
    with hoard.client(token) as tenant:
        name = unique("made-by-tenant")
        assert_problem(tenant.post("/v2/projects", json={"name": name}), 403, "admin")
        for target in (project_id, other_id):
            assert_problem(tenant.post(f"/v2/projects/{target}/tokens", json={}), 403, "admin")
        assert_problem(tenant.get("/v2/projects"), 403, "admin")
        assert tenant.get("/v2/projects").json()["title"] == "Forbidden"
    assert name not in {p["name"] for p in admin.get("/v2/projects").json()}
    # No token was minted by those calls: each project still has just the one it got.
    tokens = store_rows(hoard, "tokens")
    project_col = 1  # id, project_id, token_hash, description, created_at
    assert sum(1 for row in tokens if row[project_col] == project_id) == 1
    assert sum(1 for row in tokens if row[project_col] == other_id) == 1


def test_tenant_sees_only_its_own_project(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "own")
    other_id, _ = make_project(admin, "notmine")
    admin_project = next(p for p in admin.get("/v2/projects").json() if p["name"] == "admin")
    with hoard.client(token) as tenant:
        own = tenant.get(f"/v2/projects/{project_id}")
        assert own.status_code == 200, own.text
        assert own.json()["id"] == project_id
        assert own.json()["usage"] == {"clusters": 0, "nodes": 0, "storage_gb": 0}
        for target in (other_id, admin_project["id"], str(uuid.uuid4())):
            problem = assert_problem(tenant.get(f"/v2/projects/{target}"), 404, target)
            assert problem["title"] == "Not found"
        # Another project that exists and one that does not answer alike.
        exists = tenant.get(f"/v2/projects/{other_id}").json()
        missing_id = str(uuid.uuid4())
        missing = tenant.get(f"/v2/projects/{missing_id}").json()
        assert exists["detail"].replace(other_id, "X") == missing["detail"].replace(
            missing_id, "X")
    # The admin sees any project.
    assert admin.get(f"/v2/projects/{other_id}").status_code == 200


def test_project_name_rules(admin: httpx.Client) -> None:
    name = unique("dup")
    first = admin.post("/v2/projects", json={"name": name})
    assert first.status_code == 201, first.text
    problem = assert_problem(admin.post("/v2/projects", json={"name": name}), 409, name)
    assert problem["title"] == "Conflict"
    # Different quotas do not make it a different project.
    assert_problem(admin.post("/v2/projects", json={
        "name": name, "quotas": {"clusters": 1, "nodes": 1, "storage_gb": 1}}), 409, name)
    assert [p["name"] for p in admin.get("/v2/projects").json()].count(name) == 1


@pytest.mark.parametrize("body", [
    pytest.param({"name": ""}, id="empty"),
    pytest.param({"name": "A"}, id="upper"),
    pytest.param({"name": "1abc"}, id="digit-first"),
    pytest.param({"name": "abc_def"}, id="underscore"),
    pytest.param({"name": "a" * 64}, id="too-long"),
    pytest.param({"name": "abc;drop table"}, id="sql"),
    pytest.param({"name": "../etc"}, id="path"),
    pytest.param({"name": "ab c"}, id="space"),
    pytest.param({"name": "é"}, id="non-ascii"),
    pytest.param({"name": 5}, id="int"),
    pytest.param({}, id="missing"),
    pytest.param({"name": "ok-name", "extra": 1}, id="extra-field"),
    pytest.param({"name": "ok-name", "quotas": {"clusters": -1, "nodes": 1,
                                                "storage_gb": 1}}, id="negative-quota"),
    pytest.param({"name": "ok-name", "quotas": {"clusters": 1}}, id="partial-quotas"),
    pytest.param({"name": "ok-name", "quotas": {"clusters": "1", "nodes": 1,
                                                "storage_gb": 1}}, id="string-quota"),
])
def test_bad_project_body_is_422(admin: httpx.Client, body: dict[str, Any]) -> None:
    before = admin.get("/v2/projects").json()
    assert_problem(admin.post("/v2/projects", json=body), 422)
    assert admin.get("/v2/projects").json() == before


def test_token_for_missing_project_is_404(hoard: HoardServer, admin: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    assert_problem(admin.post(f"/v2/projects/{missing}/tokens", json={}), 404, missing)
    assert not any(row[1] == missing for row in store_rows(hoard, "tokens"))


# --- tokens at rest --------------------------------------------------------------


def test_tokens_are_hashed_at_rest(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "hashed")
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith("hoard_")

    rows = store_rows(hoard, "tokens")
    flat = [str(value) for row in rows for value in row]
    assert not any(token in value for value in flat), "plaintext token in the tokens table"
    assert digest in flat
    mine = [row for row in rows if digest in row]
    assert len(mine) == 1 and mine[0][1] == project_id
    # The admin token is stored the same way.
    assert hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest() in flat
    assert ADMIN_TOKEN not in "".join(flat)
    # Nor is it anywhere else on disk next to the store (WAL, log, workflow store).
    for name, content in state_files_bytes(hoard).items():
        assert token.encode() not in content, name

    # The token works, its hash does not.
    with hoard.client(token) as tenant:
        assert tenant.get(f"/v2/projects/{project_id}").status_code == 200
    with hoard.client(digest) as impostor:
        assert_problem(impostor.get(f"/v2/projects/{project_id}"), 401)


def test_token_is_shown_once_with_its_description(admin: httpx.Client) -> None:
    project = admin.post("/v2/projects", json={"name": unique("desc")}).json()
    made = admin.post(f"/v2/projects/{project['id']}/tokens", json={"description": "ci"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["project_id"] == project["id"] and body["description"] == "ci"
    assert body["token"].startswith("hoard_") and len(body["token"]) > 40
    again = admin.post(f"/v2/projects/{project['id']}/tokens", json={"description": "ci"})
    assert again.json()["token"] != body["token"]
    assert_problem(admin.post(f"/v2/projects/{project['id']}/tokens",
                              json={"description": "x" * 256}), 422, "description")


def test_whoami_names_the_tokens_project(hoard: HoardServer, admin: httpx.Client) -> None:
    project = admin.post("/v2/projects", json={"name": unique("me")}).json()
    made = admin.post(f"/v2/projects/{project['id']}/tokens", json={"description": "laptop"})
    with hoard.client(made.json()["token"]) as tenant:
        me = tenant.get("/v2/whoami")
    assert me.status_code == 200, me.text
    body = me.json()
    assert {k: body[k] for k in ("project_id", "project_name", "is_admin")} == {
        "project_id": project["id"], "project_name": project["name"], "is_admin": False}
    assert body["token"]["id"] == made.json()["id"]
    assert body["token"]["description"] == "laptop" and body["token"]["created_at"]
    assert "token_hash" not in me.text and made.json()["token"] not in me.text
    boss = admin.get("/v2/whoami").json()
    assert boss["is_admin"] is True and boss["project_name"] == "admin"
    assert_problem(httpx.get(hoard.url + "/v2/whoami", headers={"Authorization": "Bearer no"}),
                   401)


def test_no_admin_token_file_when_token_is_given(hoard: HoardServer) -> None:
    assert hoard.env.get("HOARD_ADMIN_TOKEN") == ADMIN_TOKEN
    assert not (hoard.state_dir / "admin-token").exists()


def test_admin_token_file_is_written_when_no_token_is_given() -> None:
    state_dir = make_state_dir()
    server = HoardServer(state_dir)
    server.env.pop("HOARD_ADMIN_TOKEN")
    try:
        server.start()
        token_file = state_dir / "admin-token"
        assert token_file.exists()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert not token_file.with_suffix(".tmp").exists()
        token = token_file.read_text().strip()
        assert token.startswith("hoard_") and len(token) > 40
        with server.client(token) as admin:
            assert admin.get("/v2/projects").status_code == 200
            made = admin.post("/v2/projects", json={"name": unique("boot")})
            assert made.status_code == 201, made.text
        with server.client(ADMIN_TOKEN) as stranger:
            assert_problem(stranger.get("/v2/projects"), 401)
        rows = store_rows(server, "tokens")
        flat = [str(value) for row in rows for value in row]
        assert hashlib.sha256(token.encode()).hexdigest() in flat
        assert token not in "".join(flat)
    finally:
        server.stop()
        server.destroy_all_nodes()
        shutil.rmtree(state_dir, ignore_errors=True)


# --- isolation between tenants ------------------------------------------------------


def test_other_tenant_cannot_see_or_touch_a_cluster(tenants: dict[str, Any]) -> None:
    a: httpx.Client = tenants["a"]
    b: httpx.Client = tenants["b"]
    cluster_id, op_id = tenants["cluster_id"], tenants["op_id"]

    assert_problem(b.get(f"/v2/clusters/{cluster_id}"), 404, cluster_id)
    assert_problem(b.get(f"/v2/clusters/{cluster_id}/credentials"), 404, cluster_id)
    assert_problem(b.delete(f"/v2/clusters/{cluster_id}"), 404, cluster_id)
    assert_problem(b.get(f"/v2/operations/{op_id}"), 404, op_id)
    assert_problem(b.get(f"/v2/projects/{tenants['a_id']}"), 404)

    # Someone else's cluster looks exactly like a missing one.
    missing = str(uuid.uuid4())
    theirs = b.get(f"/v2/clusters/{cluster_id}").json()
    nothing = b.get(f"/v2/clusters/{missing}").json()
    assert theirs["detail"].replace(cluster_id, "X") == nothing["detail"].replace(missing, "X")

    listing = b.get("/v2/clusters", params={"limit": 1000}).json()
    assert cluster_id not in {c["id"] for c in listing["clusters"]}
    assert listing == {"clusters": [], "next": None}
    for params in ({"status": "ACTIVE"}, {"engine": "postgresql"}):
        assert b.get("/v2/clusters", params=params).json() == {"clusters": [], "next": None}
    assert b.get(f"/v2/projects/{tenants['b_id']}").json()["usage"]["clusters"] == 0

    # The admin is a project too: it does not see tenants' clusters through /v2/clusters.
    with httpx.Client(base_url=str(a.base_url),
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        assert admin.get(f"/v2/clusters/{cluster_id}").status_code == 404
        assert admin.delete(f"/v2/clusters/{cluster_id}").status_code == 404

    # After all that, A's cluster is untouched.
    cluster = a.get(f"/v2/clusters/{cluster_id}").json()
    assert cluster["status"] == "ACTIVE", cluster
    assert cluster_id in {c["id"] for c in a.get("/v2/clusters").json()["clusters"]}
    assert a.get(f"/v2/operations/{op_id}").json()["status"] == "succeeded"
    assert a.get(f"/v2/projects/{tenants['a_id']}").json()["usage"] == {
        "clusters": 1, "nodes": 1, "storage_gb": 10}


def test_credentials_connect_over_tls(hoard: HoardServer, tenants: dict[str, Any]) -> None:
    """The URI names no file of Hoard's host: the tenant brings the CA from ca_cert_url."""
    a: httpx.Client = tenants["a"]
    response = a.get(f"/v2/clusters/{tenants['cluster_id']}/credentials")
    assert response.status_code == 200, response.text
    creds = response.json()
    assert set(creds) >= {"username", "password", "uri", "ca_cert_url"}
    assert creds["username"] and len(creds["password"]) >= 16
    uri = creds["uri"]
    assert uri.startswith("postgresql://")
    assert creds["password"] in uri and uri.endswith("?sslmode=verify-full")
    assert str(hoard.state_dir) not in response.text and "sslrootcert" not in response.text
    assert creds["ca_cert_url"] == hoard.url + "/v2/ca.pem"
    ca = httpx.get(creds["ca_cert_url"]).content  # public, like /v2/ca.pem
    assert ca == (hoard.state_dir / "ca" / "ca.pem").read_bytes()
    command = creds["connect_command"]
    assert command["env"]["PGSSLROOTCERT"] == command["ca_file_placeholder"]

    with psycopg.connect(uri, sslrootcert=str(ca_file_for(a)),
                         connect_timeout=10) as conn:
        row = conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        assert row == (True,)
        assert conn.execute("select current_user").fetchone() == (creds["username"],)
        conn.execute("create table notes (id int primary key, body text)")
        conn.execute("insert into notes values (%s, %s)", (1, "hello"))
        assert conn.execute("select body from notes where id = 1").fetchone() == ("hello",)
        conn.execute("drop table notes")
        # The tenant's account is not a superuser.
        superuser = conn.execute(
            "select rolsuper from pg_roles where rolname = current_user").fetchone()
        assert superuser == (False,)
        assert conn.execute("show is_superuser").fetchone() == ("off",)


def test_tenant_cannot_reach_the_host_through_sql(tenants: dict[str, Any]) -> None:
    """No path from the tenant's account to a shell or the server's files: no
    superuser, no CREATEROLE (which, up to PostgreSQL 15, could grant
    pg_execute_server_program), no membership in the server-file roles."""
    uri = tenant_uri(tenants["a"], tenants["cluster_id"])
    with psycopg.connect(uri, connect_timeout=10, autocommit=True) as conn:
        for role in ("pg_execute_server_program", "pg_read_server_files",
                     "pg_write_server_files"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"GRANT {role} TO current_user")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE sneaky LOGIN SUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('/etc/passwd')")


def test_plaintext_connections_are_refused(tenants: dict[str, Any]) -> None:
    uri = tenant_uri(tenants["a"], tenants["cluster_id"])
    params = conninfo_to_dict(uri)
    params.pop("sslrootcert", None)
    params["sslmode"] = "disable"
    with pytest.raises(psycopg.OperationalError) as excinfo:
        psycopg.connect(make_conninfo("", **params), connect_timeout=10).close()
    assert "pg_hba.conf" in str(excinfo.value) or "encryption" in str(excinfo.value)

    # And TLS with a wrong password fails too.
    wrong = make_conninfo(uri, password="not-the-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong, connect_timeout=10).close()


def test_password_is_never_in_cluster_views(hoard: HoardServer,
                                            tenants: dict[str, Any]) -> None:
    a: httpx.Client = tenants["a"]
    cluster_id = tenants["cluster_id"]
    password = a.get(f"/v2/clusters/{cluster_id}/credentials").json()["password"]
    bodies = {
        "show": a.get(f"/v2/clusters/{cluster_id}").text,
        "list": a.get("/v2/clusters").text,
        "list-filtered": a.get("/v2/clusters", params={"status": "ACTIVE"}).text,
        "operation": a.get(f"/v2/operations/{tenants['op_id']}").text,
        "project": a.get(f"/v2/projects/{tenants['a_id']}").text,
    }
    for name, text in bodies.items():
        assert password not in text, name
        assert '"password"' not in text, name
    # Nor in the state store, the workflow store or the log: it is sealed at rest.
    for name, content in state_files_bytes(hoard).items():
        assert password.encode() not in content, name


def test_tenant_listing_after_a_wrong_token_is_unchanged(hoard: HoardServer,
                                                        tenants: dict[str, Any]) -> None:
    """A DELETE with a bad token does nothing to the cluster."""
    cluster_id = tenants["cluster_id"]
    for header in ({}, {"Authorization": "Bearer wrong"},
                   {"Authorization": f"Basic {tenants['a_token']}"}):
        response = httpx.delete(f"{hoard.url}/v2/clusters/{cluster_id}", headers=header)
        assert_problem(response, 401)
    time.sleep(0.1)
    assert tenants["a"].get(f"/v2/clusters/{cluster_id}").json()["status"] == "ACTIVE"


def test_authentication_comes_before_the_body_is_read(hoard: HoardServer) -> None:
    """Without a valid token, a malformed or non-JSON body still answers 401."""
    for content, ctype in ((b"{not json", "application/json"), (b"x=1", "text/plain")):
        response = httpx.post(hoard.url + "/v2/clusters", content=content,
                              headers={"Content-Type": ctype}, timeout=30)
        assert response.status_code == 401, response.text
