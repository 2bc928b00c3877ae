"""Concurrent changes to one cluster: exactly one is accepted, every other gets a
clean 409 (or 403 for a quota), never a 500 and never two at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    HoardServer,
    at_once,
    create_cluster,
    delete_cluster,
    new_tenant,
    tenant_uri,
    wait_operation,
)
from tests.engine_clients import write_read

PARALLEL = 10


@pytest.fixture(scope="module")
def tenant(hoard: HoardServer, admin: httpx.Client) -> Iterator[httpx.Client]:
    token = new_tenant(admin, "racers", {"clusters": 5, "nodes": 5, "storage_gb": 10})
    with hoard.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def redis_pair(tenant: httpx.Client) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    first = create_cluster(tenant, "race-a", engine="redis", storage_gb=1)
    second = create_cluster(tenant, "race-b", engine="redis", storage_gb=1)
    yield first, second
    for cluster in (first, second):
        delete_cluster(tenant, cluster["id"])


def one_accepted(answers: list[httpx.Response], refused: tuple[int, ...] = (409,)
                 ) -> httpx.Response:
    codes = Counter(a.status_code for a in answers)
    accepted = [a for a in answers if a.status_code in (200, 201, 202)]
    assert len(accepted) == 1, codes
    assert all(a.status_code in refused for a in answers if a not in accepted), \
        [(a.status_code, a.text) for a in answers if a not in accepted]
    for answer in answers:
        if answer not in accepted:
            assert answer.headers["content-type"] == "application/problem+json"
    return accepted[0]


def settle(client: httpx.Client, answer: httpx.Response) -> dict[str, Any]:
    op = wait_operation(client, answer.json()["operation"]["id"])
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    return op


def test_ten_creates_of_one_user_make_one_account(
        tenant: httpx.Client, redis_pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    cluster = redis_pair[0]
    path = f"/v2/clusters/{cluster['id']}/users"
    answers = at_once([lambda: tenant.post(path, json={"name": "raceu0"})] * PARALLEL)
    winner = one_accepted(answers)
    settle(tenant, winner)
    users = [u["name"] for u in tenant.get(path).json()["users"]]
    assert users.count("raceu0") == 1
    # The one password handed out is the one that works.
    password = winner.json()["user"]["password"]
    assert write_read("redis", tenant_uri(tenant, cluster["id"]), user="raceu0",
                      password=password, key="race:probe") == "ok"
    again = tenant.post(path, json={"name": "raceu0"})
    assert again.status_code == 409, again.text
    assert "already exists" in again.json()["detail"]


def test_restarts_and_stops_at_once_run_one(
        tenant: httpx.Client, redis_pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    cluster = redis_pair[0]
    base = f"/v2/clusters/{cluster['id']}/actions"
    calls = [lambda a=action: tenant.post(f"{base}/{a}")  # type: ignore[misc]
             for action in ["restart", "stop"] * (PARALLEL // 2)]
    winner = one_accepted(at_once(calls))
    kind = settle(tenant, winner)["kind"]
    status = tenant.get(f"/v2/clusters/{cluster['id']}").json()["status"]
    assert status == ("STOPPED" if kind == "stop" else "ACTIVE"), (kind, status)
    # Nothing is left holding the cluster: the next change is accepted.
    follow = tenant.post(f"{base}/{'start' if kind == 'stop' else 'restart'}")
    assert follow.status_code == 202, follow.text
    settle(tenant, follow)


def test_storage_quota_holds_against_concurrent_resizes(
        tenant: httpx.Client, redis_pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Quota 10 GB, two 1 GB clusters: growing either to 8 GB fits, both does not."""
    ids = [c["id"] for c in redis_pair]
    calls = [lambda cid=cid: tenant.patch(f"/v2/clusters/{cid}",  # type: ignore[misc]
                                          json={"storage_gb": 8})
             for cid in ids * (PARALLEL // 2)]
    winner = one_accepted(at_once(calls), refused=(403, 409))
    settle(tenant, winner)
    sizes = sorted(tenant.get(f"/v2/clusters/{cid}").json()["storage_gb"] for cid in ids)
    assert sizes == [1, 8]


def test_ten_creates_of_one_database_make_one(tenant: httpx.Client) -> None:
    cluster = create_cluster(tenant, "race-pg", engine="postgresql", storage_gb=1)
    try:
        path = f"/v2/clusters/{cluster['id']}/databases"
        answers = at_once([lambda: tenant.post(path, json={"name": "racedb"})] * PARALLEL)
        settle(tenant, one_accepted(answers))
        names = [d["name"] for d in tenant.get(path).json()["databases"]]
        assert names.count("racedb") == 1
    finally:
        delete_cluster(tenant, cluster["id"])
