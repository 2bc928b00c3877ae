"""Bad input gets a clear RFC 9457 problem and changes nothing; listing and the
catalog have the documented shapes.

Most tests here need no database server: a request that fails validation must
never reach the point of building one. Real clusters are made only where the
behaviour depends on one existing (duplicate names, keyset paging, filters).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HoardServer, wait_operation

PROBLEM = "application/problem+json"
VALID = {"name": "good-name", "engine": "postgresql", "size": "nano"}
ZERO_USAGE = {"clusters": 0, "nodes": 0, "storage_gb": 0}


# --- helpers -----------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_project(admin: httpx.Client, prefix: str,
                 quotas: dict[str, int] | None = None) -> tuple[str, str]:
    """A fresh project and a token for it: (project id, token)."""
    body: dict[str, Any] = {"name": unique(prefix)}
    if quotas is not None:
        body["quotas"] = quotas
    project = admin.post("/v2/projects", json=body)
    assert project.status_code == 201, project.text
    project_id = str(project.json()["id"])
    token = admin.post(f"/v2/projects/{project_id}/tokens", json={"description": prefix})
    assert token.status_code == 201, token.text
    return project_id, str(token.json()["token"])


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status whose detail names every ``mentions``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM, response.headers
    body = response.json()
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    for needle in mentions:
        assert needle.lower() in body["detail"].lower(), (needle, body)
    return dict(body)


def state_of(client: httpx.Client, project_id: str) -> tuple[list[str], dict[str, int]]:
    """What a failed request must not change: the project's clusters and usage."""
    page = client.get("/v2/clusters", params={"limit": 1000})
    assert page.status_code == 200, page.text
    project = client.get(f"/v2/projects/{project_id}")
    assert project.status_code == 200, project.text
    return sorted(c["id"] for c in page.json()["clusters"]), dict(project.json()["usage"])


def remove_clusters(client: httpx.Client, cluster_ids: list[str], timeout: float = 120) -> None:
    """Delete every cluster (waiting out a create still running), then wait for all."""
    deadline = time.monotonic() + timeout
    pending = list(cluster_ids)
    ops: list[str] = []
    while pending and time.monotonic() < deadline:
        for cluster_id in list(pending):
            response = client.delete(f"/v2/clusters/{cluster_id}")
            if response.status_code == 202:
                ops.append(response.json()["operation"]["id"])
                pending.remove(cluster_id)
            elif response.status_code == 404:
                pending.remove(cluster_id)
            # 409: still BUILDING or another operation running; try again shortly.
        if pending:
            time.sleep(0.2)
    for op_id in ops:
        op = wait_operation(client, op_id, timeout=max(1.0, deadline - time.monotonic()))
        assert op["status"] == "succeeded", op
    assert not pending, f"could not delete {pending}"


@pytest.fixture(scope="module")
def empty(hoard: HoardServer, admin: httpx.Client) -> Iterator[tuple[httpx.Client, str]]:
    """A tenant that never gets a cluster: every failed request must leave it empty."""
    project_id, token = make_project(admin, "empty")
    with hoard.client(token) as client:
        yield client, project_id


@pytest.fixture(scope="module")
def three(hoard: HoardServer, admin: httpx.Client) -> Iterator[dict[str, Any]]:
    """One tenant with three real ACTIVE clusters, built concurrently."""
    project_id, token = make_project(admin, "three")
    with hoard.client(token) as client:
        names = ["alpha", "bravo", "charlie"]
        ids: list[str] = []
        try:
            ops = []
            for name in names:
                response = client.post("/v2/clusters", json={**VALID, "name": name})
                assert response.status_code == 202, response.text
                ids.append(response.json()["cluster"]["id"])
                ops.append(response.json()["operation"]["id"])
            for op_id in ops:
                op = wait_operation(client, op_id)
                assert op["status"] == "succeeded", op
            yield {"client": client, "project_id": project_id, "ids": ids, "names": names}
        finally:
            remove_clusters(client, ids)


# --- POST /v2/clusters: each bad request is a 4xx problem and changes nothing -----

BAD_NAMES = ["", "A", "1abc", "abc_def", "a" * 64, "abc;drop table", "../etc", "ab c", "é",
             "-abc", "abc\n", "Abc", " abc"]


def _bad_bodies() -> list[Any]:
    cases: list[Any] = [
        pytest.param({**VALID, "engine": "oracle"}, ["oracle", "available", "postgresql"],
                     id="unknown-engine"),
        pytest.param({**VALID, "engine": ""}, ["available", "postgresql"], id="empty-engine"),
        pytest.param({**VALID, "version": "99"}, ["99", "version", "available"],
                     id="unknown-version"),
        pytest.param({**VALID, "size": "huge"},
                     ["huge", "available", "nano", "small", "medium", "large"],
                     id="unknown-size"),
        pytest.param({**VALID, "size": "NANO"}, ["NANO", "nano"], id="size-wrong-case"),
        pytest.param({**VALID, "nodes": 0}, ["nodes"], id="nodes-0"),
        pytest.param({**VALID, "nodes": 6}, ["nodes"], id="nodes-6"),
        pytest.param({**VALID, "nodes": 3, "durability": "eventual"}, ["durability"],
                     id="durability-unknown"),
        pytest.param({**VALID, "durability": "sync"}, ["sync", "2 or more nodes"],
                     id="durability-sync-single-node"),
        pytest.param({**VALID, "nodes": "1"}, ["nodes"], id="nodes-string"),
        pytest.param({**VALID, "nodes": True}, ["nodes"], id="nodes-bool"),
        pytest.param({**VALID, "nodes": 1.0}, ["nodes"], id="nodes-float"),
        pytest.param({**VALID, "storage_gb": 0}, ["storage_gb"], id="storage-0"),
        pytest.param({**VALID, "storage_gb": -1}, ["storage_gb"], id="storage-negative"),
        pytest.param({**VALID, "storage_gb": 10**9}, ["storage_gb"], id="storage-huge"),
        pytest.param({**VALID, "storage_gb": "10"}, ["storage_gb"], id="storage-string"),
        pytest.param({**VALID, "storage_gb": None}, ["storage_gb"], id="storage-null"),
        pytest.param({**VALID, "color": "blue"}, ["color"], id="unknown-field"),
        pytest.param({**VALID, "version": 15}, ["version"], id="version-int"),
        pytest.param({**VALID, "engine": 1}, ["engine"], id="engine-int"),
        pytest.param({**VALID, "name": None}, ["name"], id="name-null"),
        pytest.param({**VALID, "name": ["abc"]}, ["name"], id="name-list"),
        pytest.param({}, ["name", "engine", "size"], id="missing-all"),
        pytest.param({"name": "abc"}, ["engine", "size"], id="missing-engine-size"),
        pytest.param({"engine": "postgresql", "size": "nano"}, ["name"], id="missing-name"),
    ]
    for i, name in enumerate(BAD_NAMES):
        cases.append(pytest.param({**VALID, "name": name}, ["name"], id=f"bad-name-{i}"))
    cases += [
        pytest.param({**VALID, "provider": "nowhere"}, ["provider", "nowhere", "local"],
                     id="unknown-provider"),
        pytest.param({**VALID, "provider": "../local"}, ["provider"], id="provider-path"),
    ]
    return cases


@pytest.mark.parametrize(("body", "mentions"), _bad_bodies())
def test_bad_create_body_is_422_and_changes_nothing(
    empty: tuple[httpx.Client, str], body: dict[str, Any], mentions: list[str]
) -> None:
    client, project_id = empty
    before = state_of(client, project_id)
    assert before == ([], ZERO_USAGE)
    problem = assert_problem(client.post("/v2/clusters", json=body), 422, *mentions)
    assert problem["title"] == "Invalid input"
    assert state_of(client, project_id) == before


def test_bad_name_error_lists_the_field(empty: tuple[httpx.Client, str]) -> None:
    client, _ = empty
    problem = assert_problem(
        client.post("/v2/clusters", json={**VALID, "name": "Bad_Name"}), 422, "name", "[a-z]"
    )
    assert [e["field"] for e in problem["errors"]] == ["name"]


def test_longest_name_is_accepted_by_validation_but_stopped_by_quota(
    hoard: HoardServer, admin: httpx.Client
) -> None:
    """63 characters is a legal name (64 is not): validation passes, the quota stops it,
    so the test needs no database server."""
    project_id, token = make_project(admin, "long", {"clusters": 0, "nodes": 0,
                                                     "storage_gb": 0})
    with hoard.client(token) as client:
        assert_problem(client.post("/v2/clusters", json={**VALID, "name": "a" * 63}),
                       403, "quota")
        assert_problem(client.post("/v2/clusters", json={**VALID, "name": "a" * 64}),
                       422, "name")
        assert state_of(client, project_id) == ([], ZERO_USAGE)


def test_unknown_version_lists_available_versions(
    empty: tuple[httpx.Client, str]
) -> None:
    client, project_id = empty
    engines = client.get("/v2/engines").json()["engines"]
    versions = next(e["versions"] for e in engines if e["name"] == "postgresql")
    assert versions
    assert_problem(client.post("/v2/clusters", json={**VALID, "version": "7.4"}),
                   422, "7.4", *versions)
    assert state_of(client, project_id) == ([], ZERO_USAGE)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"name": "abc", "engine": "postgresql",', "application/json",
                     id="truncated"),
        pytest.param(b"{name: abc}", "application/json", id="unquoted"),
        pytest.param(b"not json at all", "application/json", id="text"),
        pytest.param(b'{"name": "abc"}}', "application/json", id="trailing-brace"),
    ],
)
def test_malformed_json_is_400(
    empty: tuple[httpx.Client, str], content: bytes, content_type: str
) -> None:
    client, project_id = empty
    response = client.post("/v2/clusters", content=content,
                           headers={"Content-Type": content_type})
    problem = assert_problem(response, 400, "json")
    assert problem["title"] == "Malformed JSON"
    assert state_of(client, project_id) == ([], ZERO_USAGE)


def test_body_not_utf8_is_400(empty: tuple[httpx.Client, str]) -> None:
    """Bytes that are not even UTF-8 are malformed JSON too."""
    client, project_id = empty
    response = client.post("/v2/clusters", content=b'\xff\xfe{"name"',
                           headers={"Content-Type": "application/json"})
    assert assert_problem(response, 400)["title"] == "Malformed JSON"
    assert state_of(client, project_id) == ([], ZERO_USAGE)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(json.dumps([VALID]).encode(), "application/json", id="json-array"),
        pytest.param(b'"good-name"', "application/json", id="json-string"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b"42", "application/json", id="json-number"),
        pytest.param(json.dumps(VALID).encode(), "text/plain", id="text-plain"),
        pytest.param(b"name=good-name&engine=postgresql&size=nano",
                     "application/x-www-form-urlencoded", id="form"),
        pytest.param(json.dumps(VALID).encode(), "application/xml", id="xml-type"),
        pytest.param(b"", "application/json", id="empty-body"),
        pytest.param(b"", None, id="no-body-no-type"),
    ],
)
def test_wrong_body_shape_or_content_is_rejected(
    empty: tuple[httpx.Client, str], content: bytes, content_type: str | None
) -> None:
    client, project_id = empty
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v2/clusters", content=content, headers=headers)
    assert response.status_code in (400, 415, 422), response.text
    if content and content_type != "application/json":
        assert response.status_code == 415, response.text
    assert_problem(response, response.status_code)
    assert state_of(client, project_id) == ([], ZERO_USAGE)


# --- quotas --------------------------------------------------------------------


def test_storage_over_quota_is_403(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "quota", {"clusters": 1, "nodes": 1,
                                                      "storage_gb": 5})
    with hoard.client(token) as client:
        before = state_of(client, project_id)
        problem = assert_problem(
            client.post("/v2/clusters", json={**VALID, "storage_gb": 10}),
            403, "storage", "quota", "5",
        )
        assert problem["title"] == "Quota exceeded"
        # The default storage (10 GB) is over this quota too.
        assert_problem(client.post("/v2/clusters", json=VALID), 403, "storage", "quota")
        assert state_of(client, project_id) == before == ([], ZERO_USAGE)


def test_zero_cluster_quota_is_403(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "noquota", {"clusters": 0, "nodes": 10,
                                                        "storage_gb": 100})
    with hoard.client(token) as client:
        problem = assert_problem(client.post("/v2/clusters", json=VALID), 403,
                                 "cluster", "quota")
        assert problem["title"] == "Quota exceeded"
        assert state_of(client, project_id) == ([], ZERO_USAGE)


def test_zero_node_quota_is_403(hoard: HoardServer, admin: httpx.Client) -> None:
    project_id, token = make_project(admin, "nonodes", {"clusters": 5, "nodes": 0,
                                                        "storage_gb": 100})
    with hoard.client(token) as client:
        assert_problem(client.post("/v2/clusters", json=VALID), 403, "node", "quota")
        assert state_of(client, project_id) == ([], ZERO_USAGE)


def test_validation_comes_before_quota(hoard: HoardServer, admin: httpx.Client) -> None:
    """A request that is wrong anyway says what is wrong with it, not 'over quota'."""
    project_id, token = make_project(admin, "vfirst", {"clusters": 0, "nodes": 0,
                                                       "storage_gb": 0})
    with hoard.client(token) as client:
        assert_problem(client.post("/v2/clusters", json={**VALID, "size": "huge"}),
                       422, "size")
        assert_problem(client.post("/v2/clusters", json={**VALID, "engine": "nope"}),
                       422, "engine")
        assert state_of(client, project_id) == ([], ZERO_USAGE)


# --- GET /v2/clusters: query errors, 404s, page shape ---------------------------


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        pytest.param({"limit": 0}, ["limit"], id="limit-0"),
        pytest.param({"limit": -5}, ["limit"], id="limit-negative"),
        pytest.param({"limit": 1001}, ["limit"], id="limit-1001"),
        pytest.param({"limit": "x"}, ["limit"], id="limit-x"),
        pytest.param({"limit": "1.5"}, ["limit"], id="limit-float"),
        pytest.param({"marker": "not-a-uuid"}, ["marker", "not-a-uuid"], id="marker"),
        pytest.param({"marker": "' OR 1=1 --"}, ["marker"], id="marker-sql"),
        pytest.param({"status": "BOGUS"}, ["status"], id="status"),
        pytest.param({"status": "active"}, ["status"], id="status-lowercase"),
        pytest.param({"engine": "e" * 33}, ["engine"], id="engine-too-long"),
    ],
)
def test_bad_list_query_is_422(
    empty: tuple[httpx.Client, str], params: dict[str, Any], mentions: list[str]
) -> None:
    client, _ = empty
    assert_problem(client.get("/v2/clusters", params=params), 422, *mentions)


@pytest.mark.parametrize("cluster_id", ["7d1c9a2e-0b7e-4c53-9f0e-3a1f6d2b8c41", "not-a-uuid", "0"])
def test_unknown_cluster_is_404(empty: tuple[httpx.Client, str], cluster_id: str) -> None:
    client, project_id = empty
    problem = assert_problem(client.get(f"/v2/clusters/{cluster_id}"), 404, cluster_id)
    assert problem["title"] == "Not found"
    assert_problem(client.get(f"/v2/clusters/{cluster_id}/credentials"), 404)
    assert_problem(client.delete(f"/v2/clusters/{cluster_id}"), 404)
    assert state_of(client, project_id) == ([], ZERO_USAGE)


def test_unknown_operation_and_route_are_404(empty: tuple[httpx.Client, str]) -> None:
    client, _ = empty
    assert_problem(client.get(f"/v2/operations/{uuid.uuid4()}"), 404)
    assert_problem(client.get("/v2/no-such-thing"), 404)


def test_wrong_method_is_405_problem(empty: tuple[httpx.Client, str]) -> None:
    """With every method the path takes in Allow (RFC 9110), not only the first route's."""
    client, _ = empty
    response = client.put("/v2/clusters", json=VALID)
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = client.post(f"/v2/clusters/{uuid.uuid4()}")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH", response.headers


def test_empty_tenant_page_shape(empty: tuple[httpx.Client, str]) -> None:
    client, _ = empty
    for params in ({}, {"limit": 1}, {"limit": 1000}, {"status": "ACTIVE"},
                   {"engine": "postgresql"}, {"marker": str(uuid.uuid4())}):
        response = client.get("/v2/clusters", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"clusters": [], "next": None}


# --- with real clusters ----------------------------------------------------------


def test_keyset_paging(three: dict[str, Any]) -> None:
    client: httpx.Client = three["client"]
    first = client.get("/v2/clusters", params={"limit": 2})
    assert first.status_code == 200, first.text
    page1 = first.json()
    assert set(page1) == {"clusters", "next"}
    assert len(page1["clusters"]) == 2
    assert isinstance(page1["next"], str) and page1["next"].startswith("/v2/clusters?")
    assert "limit=2" in page1["next"]

    second = client.get(page1["next"])
    assert second.status_code == 200, second.text
    page2 = second.json()
    assert len(page2["clusters"]) == 1
    assert page2["next"] is None

    seen = [c["id"] for c in page1["clusters"] + page2["clusters"]]
    assert seen == sorted(seen), "pages go oldest first, in id order"
    assert sorted(seen) == sorted(three["ids"])
    assert {c["name"] for c in page1["clusters"] + page2["clusters"]} == set(three["names"])

    # A page exactly as long as what is left has no next link.
    exact = client.get("/v2/clusters", params={"limit": 3}).json()
    assert len(exact["clusters"]) == 3 and exact["next"] is None
    # Marker past the last id: empty page.
    after_last = client.get("/v2/clusters", params={"marker": seen[-1]}).json()
    assert after_last == {"clusters": [], "next": None}
    # One at a time walks all three.
    walked, url = [], "/v2/clusters?limit=1"
    while url:
        page = client.get(url).json()
        walked += [c["id"] for c in page["clusters"]]
        url = page["next"]
    assert walked == seen


def test_list_filters(three: dict[str, Any]) -> None:
    client: httpx.Client = three["client"]
    ids = sorted(three["ids"])

    active = client.get("/v2/clusters", params={"status": "ACTIVE"}).json()
    assert sorted(c["id"] for c in active["clusters"]) == ids
    assert all(c["status"] == "ACTIVE" for c in active["clusters"])

    pg = client.get("/v2/clusters", params={"engine": "postgresql"}).json()
    assert sorted(c["id"] for c in pg["clusters"]) == ids

    assert client.get("/v2/clusters", params={"engine": "mariadb"}).json() == {
        "clusters": [], "next": None}
    assert client.get("/v2/clusters", params={"status": "BUILDING"}).json() == {
        "clusters": [], "next": None}

    # The next link keeps the filters.
    page1 = client.get("/v2/clusters", params={"status": "ACTIVE", "engine": "postgresql",
                                               "limit": 2}).json()
    assert len(page1["clusters"]) == 2
    assert "status=ACTIVE" in page1["next"] and "engine=postgresql" in page1["next"]
    page2 = client.get(page1["next"]).json()
    assert len(page2["clusters"]) == 1 and page2["next"] is None


def test_cluster_view_shape(three: dict[str, Any]) -> None:
    client: httpx.Client = three["client"]
    cluster = client.get(f"/v2/clusters/{three['ids'][0]}").json()
    assert cluster["id"] == three["ids"][0]
    assert cluster["name"] == three["names"][0]
    assert cluster["engine"] == "postgresql" and cluster["size"] == "nano"
    assert cluster["provider"] == "local"  # the operator's default
    assert cluster["nodes"] == 1 and cluster["storage_gb"] == 10
    assert cluster["status"] == "ACTIVE"
    assert len(cluster["members"]) == 1 and cluster["members"][0]["role"] == "primary"
    assert [e["role"] for e in cluster["endpoints"]] == ["read-write"]
    assert "password" not in json.dumps(cluster).lower()


def test_duplicate_name_in_same_project_is_409(three: dict[str, Any]) -> None:
    client: httpx.Client = three["client"]
    before = state_of(client, three["project_id"])
    assert before[1] == {"clusters": 3, "nodes": 3, "storage_gb": 30}
    name = three["names"][1]
    problem = assert_problem(client.post("/v2/clusters", json={**VALID, "name": name}),
                             409, name)
    assert problem["title"] == "Conflict"
    # Different size or storage makes no difference: the name is taken.
    assert_problem(client.post("/v2/clusters", json={**VALID, "name": name, "size": "small",
                                                     "storage_gb": 1}), 409, name)
    assert state_of(client, three["project_id"]) == before


def test_same_name_in_another_project_is_fine(
    hoard: HoardServer, admin: httpx.Client, three: dict[str, Any]
) -> None:
    """The name is unique per project only. Several concurrent requests for it in the
    other project: exactly one wins, the rest are 409."""
    project_id, token = make_project(admin, "other")
    name = three["names"][0]
    created: list[str] = []
    with hoard.client(token) as client:
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                responses = list(pool.map(
                    lambda _: client.post("/v2/clusters", json={**VALID, "name": name}),
                    range(4),
                ))
            created = [r.json()["cluster"]["id"] for r in responses if r.status_code == 202]
            assert sorted(r.status_code for r in responses) == [202, 409, 409, 409], [
                r.text for r in responses]
            for response in responses:
                if response.status_code == 409:
                    assert_problem(response, 409, name)
            accepted = next(r.json() for r in responses if r.status_code == 202)
            assert accepted["cluster"]["name"] == name
            assert accepted["cluster"]["status"] == "BUILDING"
            assert accepted["operation"]["kind"] == "create"
            op = wait_operation(client, accepted["operation"]["id"])
            assert op["status"] == "succeeded", op
            assert client.get(f"/v2/clusters/{created[0]}").json()["status"] == "ACTIVE"
            _, usage = state_of(client, project_id)
            assert usage == {"clusters": 1, "nodes": 1, "storage_gb": 10}
        finally:
            remove_clusters(client, created)
        assert state_of(client, project_id) == ([], ZERO_USAGE)
    # The first project's cluster of that name is untouched.
    first = three["client"].get(f"/v2/clusters/{three['ids'][0]}").json()
    assert first["status"] == "ACTIVE"


# --- catalog and public documents ----------------------------------------------------


def test_engines_shape(admin: httpx.Client) -> None:
    response = admin.get("/v2/engines")
    assert response.status_code == 200, response.text
    engines = response.json()["engines"]
    assert isinstance(engines, list) and engines
    pg = next(e for e in engines if e["name"] == "postgresql")
    assert set(pg) >= {"name", "display_name", "versions", "default_version", "parameters"}
    assert isinstance(pg["display_name"], str) and pg["display_name"]
    assert isinstance(pg["versions"], list) and pg["versions"]
    assert all(isinstance(v, str) and v for v in pg["versions"])
    assert pg["default_version"] == pg["versions"][0]
    assert isinstance(pg["parameters"], list)


def test_sizes_shape(admin: httpx.Client) -> None:
    response = admin.get("/v2/sizes")
    assert response.status_code == 200, response.text
    sizes = response.json()["sizes"]
    assert [s["name"] for s in sizes] == ["nano", "small", "medium", "large"]
    for size in sizes:
        assert set(size) == {"name", "cpus", "memory_mb", "description"}
        assert size["cpus"] > 0 and size["memory_mb"] > 0
        assert isinstance(size["description"], str)
    memory = [s["memory_mb"] for s in sizes]
    assert memory == sorted(memory)


def test_ca_pem_is_public_certificate(hoard: HoardServer) -> None:
    from cryptography import x509

    response = httpx.get(hoard.url + "/v2/ca.pem")  # no Authorization header
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-pem-file")
    text = response.text
    assert text.startswith("-----BEGIN CERTIFICATE-----")
    assert text.rstrip().endswith("-----END CERTIFICATE-----")
    assert "PRIVATE KEY" not in text
    cert = x509.load_pem_x509_certificate(response.content)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    # The same certificate with a token, and it is the one on disk.
    assert hoard.client().get("/v2/ca.pem").content == response.content
    assert (hoard.state_dir / "ca" / "ca.pem").read_bytes() == response.content


def test_openapi_document(hoard: HoardServer) -> None:
    response = httpx.get(hoard.url + "/v2/openapi.json")
    assert response.status_code == 200, response.text
    doc = json.loads(response.text)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "/v2/clusters" in paths
    assert {"get", "post"} <= set(paths["/v2/clusters"])
    for path in ("/v2/clusters/{cluster_id}", "/v2/clusters/{cluster_id}/credentials",
                 "/v2/operations/{operation_id}", "/v2/engines", "/v2/sizes",
                 "/v2/projects"):
        assert path in paths, path
    assert "ClusterCreate" in doc["components"]["schemas"]


def test_root_links(hoard: HoardServer) -> None:
    root = httpx.get(hoard.url + "/v2").json()
    assert root["links"]["clusters"] == "/v2/clusters"
    assert isinstance(root["version"], str)


def test_both_list_paths_answer_alike(three: dict[str, Any]) -> None:
    """A plainly valid query is answered before FastAPI (hoard/api/lean.py); an
    unknown parameter, which the route ignores, sends the same query through
    FastAPI: the two answers are the same bytes, next links included."""
    client: httpx.Client = three["client"]
    first = sorted(three["ids"])[0]
    for query in ("", "limit=1", "limit=2&status=ACTIVE", "limit=1&engine=postgresql",
                  f"marker={first}&limit=1", "limit=0050", "engine=", "limit=101"):
        lean = client.get(f"/v2/clusters?{query}")
        full = client.get(f"/v2/clusters?{query}&via=fastapi")
        assert lean.status_code == full.status_code == 200, (query, lean.text, full.text)
        assert lean.content == full.content, query
        assert lean.headers["content-type"] == full.headers["content-type"]
