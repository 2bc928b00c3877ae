"""Guard rails a tenant sets on a cluster: labels (and lists filtered by them) and
deletion protection, against a real Hoard and real servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant
from tests.test_api_validation import assert_problem


@pytest.fixture(scope="module")
def tenant(admin: httpx.Client, hoard: HoardServer) -> Iterator[httpx.Client]:
    with hoard.client(new_tenant(admin, f"rails-{time.monotonic_ns()}")) as client:
        yield client


def names(client: httpx.Client, **params: Any) -> list[str]:
    answer = client.get("/v2/clusters", params=params)
    assert answer.status_code == 200, answer.text
    return [c["name"] for c in answer.json()["clusters"]]


def test_labels_tag_clusters_and_filter_lists(tenant: httpx.Client) -> None:
    prod = create_cluster(tenant, "cache-prod", engine="redis",
                          labels={"env": "prod", "team": "payments"})
    dev = create_cluster(tenant, "cache-dev", engine="redis", labels={"env": "dev"})
    try:
        assert prod["labels"] == {"env": "prod", "team": "payments"}
        assert names(tenant, label="env=prod") == ["cache-prod"]
        assert names(tenant, label="env=prod,team=payments") == ["cache-prod"]
        assert names(tenant, label="env=prod,team=search") == []
        assert sorted(names(tenant, label="env=dev")) == ["cache-dev"]
        assert names(tenant, label="env=dev", engine="postgresql") == []
        page = tenant.get("/v2/clusters", params={"label": "env=dev", "limit": 1}).json()
        assert page["next"] is None
        both = tenant.get("/v2/clusters", params={"limit": 1}).json()
        assert both["next"].startswith("/v2/clusters?limit=1&marker=")
        # Replaced at once, no operation.
        changed = tenant.patch(f"/v2/clusters/{dev['id']}", json={"labels": {"env": "prod"}})
        assert changed.status_code == 200 and changed.json()["operation"] is None
        assert changed.json()["cluster"]["labels"] == {"env": "prod"}
        assert sorted(names(tenant, label="env=prod")) == ["cache-dev", "cache-prod"]
        first = tenant.get("/v2/clusters", params={"label": "env=prod", "limit": 1}).json()
        assert first["next"].endswith("&label=env%3Dprod")
        rest = tenant.get(first["next"]).json()
        assert len(first["clusters"]) == len(rest["clusters"]) == 1
    finally:
        delete_cluster(tenant, prod["id"])
        delete_cluster(tenant, dev["id"])


@pytest.mark.parametrize("labels", [{"Env": "prod"}, {"env": "Prod"}, {"-env": "x"},
                                    {"env": "a" * 64}, {"env": "a b"}, {"": "x"},
                                    {f"k{i}": "v" for i in range(33)}, {"env": 1}])
def test_bad_labels_are_refused_and_make_nothing(tenant: httpx.Client,
                                                 labels: dict[str, Any]) -> None:
    before = names(tenant)
    answer = tenant.post("/v2/clusters", json={"name": "tagged", "engine": "redis",
                                               "size": "nano", "labels": labels})
    assert answer.status_code == 422, answer.text
    assert names(tenant) == before


@pytest.mark.parametrize("selector", ["env", "env=prod,env=dev", "Env=prod", "env=a b",
                                      "=prod"])
def test_bad_label_selectors_are_refused(tenant: httpx.Client, selector: str) -> None:
    assert_problem(tenant.get("/v2/clusters", params={"label": selector}), 422, "label")


def test_deletion_protection_refuses_a_delete_until_turned_off(tenant: httpx.Client) -> None:
    made = create_cluster(tenant, "guarded-cache", engine="redis", deletion_protection=True)
    assert made["deletion_protection"] is True
    events = tenant.get(f"/v2/clusters/{made['id']}/events").json()["events"]
    assert_problem(tenant.delete(f"/v2/clusters/{made['id']}"), 409, "deletion protection")
    assert_problem(tenant.delete(f"/v2/clusters/{made['id']}",
                                 params={"final_backup": "true"}), 409, "deletion protection")
    assert tenant.get(f"/v2/clusters/{made['id']}").json()["status"] == "ACTIVE"
    assert tenant.get(f"/v2/clusters/{made['id']}/events").json()["events"] == events
    assert tenant.get("/v2/backups", params={"cluster_id": made["id"]}).json()["backups"] == []
    assert_problem(tenant.patch(f"/v2/clusters/{made['id']}", json={
        "deletion_protection": False, "size": "small"}), 422, "on their own")
    off = tenant.patch(f"/v2/clusters/{made['id']}", json={"deletion_protection": False})
    assert off.status_code == 200 and off.json()["cluster"]["deletion_protection"] is False
    delete_cluster(tenant, made["id"])
