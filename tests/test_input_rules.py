"""Input rules beyond the schema, each refused with a clear problem that changes
nothing: a restore time outside what UTC can hold, a backup schedule that never
(or not every year) fires, deleting a cluster's default database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant

PROBLEM = "application/problem+json"
VALID = {"name": "good-name", "engine": "postgresql", "size": "nano"}


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = dict(response.json())
    for needle in mentions:
        assert needle in body["detail"], (needle, body)
    return body


def schedule_in_store(server: HoardServer, cluster_id: str) -> Any:
    """The cluster's schedule as stored (no endpoint reads it back)."""
    uri = f"file:{server.state_dir / 'state.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        row = db.execute("SELECT backup_schedule FROM clusters WHERE id = ?",
                         (cluster_id,)).fetchone()
    return json.loads(row[0]) if row and row[0] else None


@pytest.fixture(scope="module")
def tenant(hoard: HoardServer, admin: httpx.Client) -> Iterator[httpx.Client]:
    with hoard.client(new_tenant(admin, "rules")) as client:
        yield client


@pytest.fixture(scope="module")
def cluster(tenant: httpx.Client) -> Iterator[dict[str, Any]]:
    made = create_cluster(tenant, "rules-db")
    yield made
    delete_cluster(tenant, made["id"])


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_restore_time_outside_utc_range_is_422(tenant: httpx.Client, when: str) -> None:
    """Was a 500 (OverflowError converting to UTC)."""
    before = tenant.get("/v2/clusters").json()
    body = {**VALID, "restore": {"cluster_id": "0190f0f0-0000-7000-8000-000000000000",
                                 "time": when}}
    problem = assert_problem(tenant.post("/v2/clusters", json=body), 422,
                             when, "outside years 1-9999")
    assert [e["field"] for e in problem["errors"]] == ["restore.time"]
    assert tenant.get("/v2/clusters").json() == before


@pytest.mark.parametrize(("cron", "says"), [
    ("0 0 31 2 *", "never fires"),
    ("0 0 31 4 *", "never fires"),
    ("0 0 29 2 *", "at least once every year"),
    ("0 0 * * *  *", "not a 5-field"),
])
def test_schedule_that_does_not_fire_every_year_is_422(
    hoard: HoardServer, tenant: httpx.Client, cluster: dict[str, Any], cron: str, says: str
) -> None:
    path = f"/v2/clusters/{cluster['id']}/backup-schedule"
    kept = {"cron": "0 3 * * *", "keep_last": 3, "keep_days": None, "verify": None}
    assert tenant.put(path, json=kept).status_code == 200
    assert_problem(tenant.put(path, json={"cron": cron, "keep_last": 5}), 422, cron, says)
    assert schedule_in_store(hoard, cluster["id"]) == kept


def test_default_database_cannot_be_deleted(tenant: httpx.Client,
                                            cluster: dict[str, Any]) -> None:
    base = f"/v2/clusters/{cluster['id']}/databases"
    assert "app" in [d["name"] for d in tenant.get(base).json()["databases"]]
    problem = assert_problem(tenant.delete(f"{base}/app"), 409, "'app'", "default database")
    assert problem["title"] == "Conflict"
    assert "app" in [d["name"] for d in tenant.get(base).json()["databases"]]
    # Any other database still goes.
    assert tenant.post(base, json={"name": "scratch"}).status_code == 201
    assert tenant.delete(f"{base}/scratch").status_code == 200
    assert [d["name"] for d in tenant.get(base).json()["databases"]] == ["app"]
