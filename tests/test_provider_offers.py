"""The catalog says which provider offers which engine, version and ability,
and a create asking a provider for what it does not offer is refused before
any work, naming the provider. The second provider is the real Kubernetes
one, configured against kmock's emulator (tests/kube_support.py): it offers
images of its own catalogue and declares what it cannot do yet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoard.cli.engines import rows
from hoard.domain.abilities import Ability, refusal
from tests.conftest import HoardServer, hoard_server, new_tenant, wait_operation
from tests.kube_support import RESOURCES, MockApi, kubeconfig_for, mock_api
from tests.test_cli import as_json, hoard_cli

PROBLEM = "application/problem+json"
# The images this Kubernetes provider offers: PostgreSQL 16 (which the local
# provider has not installed) and 15, Redis 7.0, no MariaDB.
KUBE_VERSIONS = "postgresql=16,postgresql=15,redis=7.0"
KUBE_LACKS: list[str] = []  # every ability is offered there now


@pytest.fixture(scope="module")
def api() -> Iterator[MockApi]:
    with mock_api() as running:
        yield running


@pytest.fixture(scope="module")
def server(api: MockApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HoardServer]:
    kubeconfig = kubeconfig_for(api.url, tmp_path_factory.mktemp("kube") / "config")
    with hoard_server({"HOARD_KUBECONFIG": str(kubeconfig),
                       # the emulator runs no controllers: no pod ever runs
                       "HOARD_KUBERNETES_START_DEADLINE": "3",
                       "HOARD_KUBERNETES_VERSIONS": KUBE_VERSIONS}) as running:
        yield running


@pytest.fixture(scope="module")
def token(server: HoardServer) -> str:
    with server.client() as admin:
        return new_tenant(admin, "offers")


@pytest.fixture(scope="module")
def tenant(server: HoardServer, token: str) -> Iterator[httpx.Client]:
    with server.client(token) as client:
        yield client


def nothing_made(client: httpx.Client, api: MockApi) -> None:
    """No cluster in the project, no object on the Kubernetes side."""
    assert client.get("/v2/clusters").json()["clusters"] == []
    for resource in RESOURCES:
        assert api.objects(resource.rsplit("/", 1)[1]) == {}, resource


def refused(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM), answer.headers
    return str(answer.json()["detail"])


def test_each_version_names_the_providers_offering_it(tenant: httpx.Client) -> None:
    pg = tenant.get("/v2/engines/postgresql").json()
    # What old clients read is unchanged: the default provider's versions.
    assert (pg["versions"], pg["default_version"]) == (["15"], "15")
    assert pg["version_providers"] == [{"version": "16", "providers": ["kubernetes"]},
                                       {"version": "15", "providers": ["local", "kubernetes"]}]
    assert pg["providers"] == [
        {"name": "local", "default": True, "versions": ["15"], "missing_abilities": []},
        {"name": "kubernetes", "default": False, "versions": ["16", "15"],
         "missing_abilities": KUBE_LACKS},
    ]


def test_an_engine_one_provider_lacks_is_offered_by_the_other(tenant: httpx.Client) -> None:
    engines = {e["name"]: e for e in tenant.get("/v2/engines").json()["engines"]}
    assert engines["mariadb"]["version_providers"] == [{"version": "10.11",
                                                        "providers": ["local"]}]
    assert [(p["name"], p["versions"]) for p in engines["mariadb"]["providers"]] == [
        ("local", ["10.11"]), ("kubernetes", [])]
    assert engines["redis"]["version_providers"] == [{"version": "7.0",
                                                      "providers": ["local", "kubernetes"]}]
    assert engines["redis"]["providers"][1]["missing_abilities"] == KUBE_LACKS


def test_the_catalog_lists_the_providers_a_create_may_name(tenant: httpx.Client) -> None:
    assert tenant.get("/v2/engines").json()["providers"] == [
        {"name": "local", "default": True, "missing_abilities": []},
        {"name": "kubernetes", "default": False, "missing_abilities": KUBE_LACKS},
    ]


def test_the_cli_lists_each_versions_providers(server: HoardServer, token: str,
                                               tenant: httpx.Client) -> None:
    expected = [
        ("postgresql", "16", "kubernetes", "-"),
        ("postgresql", "15", "local*, kubernetes", "-"),
        ("mariadb", "10.11", "local*", "-"),
        ("redis", "7.0", "local*, kubernetes", "-"),
    ]
    assert rows(tenant.get("/v2/engines").json()) == expected
    shown = hoard_cli(server, token, "engine", "list")
    assert shown.returncode == 0, shown.stderr
    for engine, version, providers, _ in expected:
        assert any(engine in line and f" {version} " in line and providers in line
                   for line in shown.stdout.splitlines()), (engine, version, shown.stdout)
    assert as_json(hoard_cli(server, token, "engine", "list", "-o", "json")
                   ) == tenant.get("/v2/engines").json()


def test_what_a_provider_lacks_is_refused_in_words_a_tenant_can_act_on() -> None:
    """Every real provider offers every ability now; the refusal a create or
    change would get for one its provider lacks (``offers.require``)."""
    lacks = frozenset({Ability.REPLICATED_CLUSTERS})
    assert refusal("kubernetes", Ability.BACKUPS, lacks) is None
    assert refusal("kubernetes", Ability.REPLICATED_CLUSTERS, lacks) == (
        "the kubernetes provider offers no replicated clusters yet; choose another provider "
        "(GET /v2/engines lists each one's missing abilities)")


def test_a_restore_onto_kubernetes_is_not_refused_for_its_provider(
    tenant: httpx.Client, api: MockApi,
) -> None:
    """Backups and point-in-time restores are offered there: a restore to a time
    of a cluster with no backups is refused for that alone."""
    missing = "0190a3b4-0000-7000-8000-000000000000"
    answer = tenant.post("/v2/clusters", json={
        "name": "restored", "engine": "postgresql", "size": "nano", "provider": "kubernetes",
        "restore": {"cluster_id": missing, "time": "2026-01-01T00:00:00Z"}})
    assert refused(answer) == f"cluster '{missing}' has no backups to restore from"
    nothing_made(tenant, api)


@pytest.mark.parametrize(("engine", "version", "provider", "detail"), [
    pytest.param("postgresql", "14", "kubernetes", "unknown postgresql version '14' on provider "
                 "'kubernetes'; available: 16, 15", id="kube-pg14"),
    pytest.param("postgresql", "16", "local", "unknown postgresql version '16' on provider "
                 "'local'; available: 15", id="local-pg16"),
    pytest.param("postgresql", "16", None, "unknown postgresql version '16' on provider "
                 "'local'; available: 15", id="default-pg16"),
    pytest.param("mariadb", "10.11", "kubernetes", "provider 'kubernetes' offers no version "
                 "of engine 'mariadb'", id="kube-mariadb"),
])
def test_a_version_its_provider_does_not_offer_is_refused(
    tenant: httpx.Client, api: MockApi, engine: str, version: str, provider: str | None,
    detail: str,
) -> None:
    body: dict[str, Any] = {"name": "old", "engine": engine, "version": version,
                            "size": "nano"}
    if provider is not None:
        body["provider"] = provider
    assert refused(tenant.post("/v2/clusters", json=body)) == detail
    nothing_made(tenant, api)


def test_a_cluster_cannot_change_provider(tenant: httpx.Client, api: MockApi) -> None:
    """No field moves a cluster (a restore onto another provider makes a new one):
    a PATCH naming a provider is refused whole, as any field it does not take."""
    made = tenant.post("/v2/clusters", json={"name": "stays", "engine": "redis",
                                             "size": "nano"})
    assert made.status_code == 202, made.text
    cluster_id = made.json()["cluster"]["id"]
    try:
        for fields in ({"provider": "kubernetes"},
                       {"provider": "kubernetes", "labels": {"a": "b"}}):
            answer = tenant.patch(f"/v2/clusters/{cluster_id}", json=fields)
            assert refused(answer) == "provider: Extra inputs are not permitted"
        shown = tenant.get(f"/v2/clusters/{cluster_id}").json()
        assert (shown["provider"], shown["labels"]) == ("local", {})
        assert [m["provider"] for m in shown["members"]] == ["local"]
        assert api.objects("statefulsets") == {}
    finally:
        wait_operation(tenant, made.json()["operation"]["id"])
        gone = tenant.delete(f"/v2/clusters/{cluster_id}")
        assert gone.status_code == 202, gone.text
        wait_operation(tenant, gone.json()["operation"]["id"])


def test_the_kubernetes_provider_declares_what_it_lacks(tmp_path: Path) -> None:
    """Declared, not found out: built from the settings with no API server
    answering, it says what it cannot do yet."""
    from hoard.providers.kubernetes import from_settings
    from hoard.settings import Settings

    config = kubeconfig_for("http://127.0.0.1:9", tmp_path / "config")
    made = from_settings(Settings(kubeconfig=str(config), kubernetes_versions=KUBE_VERSIONS))
    assert made is not None and made.lacks == frozenset(KUBE_LACKS)


def test_changes_it_offers_are_refused_for_a_failed_clusters_state(tenant: httpx.Client) -> None:
    """A cluster on the Kubernetes provider (FAILED placing its nodes: on the emulator its
    pod never runs, and the start deadline passes) is refused a backup and a
    pooler, both offered there, for its state, not its provider; nothing of
    it changes."""
    made = tenant.post("/v2/clusters", json={"name": "lacking", "engine": "postgresql",
                                             "size": "nano", "provider": "kubernetes"})
    assert made.status_code == 202, made.text
    cluster_id = made.json()["cluster"]["id"]
    assert wait_operation(tenant, made.json()["operation"]["id"])["status"] == "failed"
    path = f"/v2/clusters/{cluster_id}"
    before = tenant.get(path).json()
    try:
        # Backups are offered there: one is refused for the cluster's state alone.
        backup = tenant.post(f"{path}/backups")
        assert backup.status_code == 409, backup.text
        assert backup.json()["detail"] == ("the cluster is FAILED; backup needs it ACTIVE "
                                           "or DEGRADED")
        # The pooler is offered there too: refused for the cluster's state alone.
        pooler = tenant.patch(path, json={"pooler": {"mode": "transaction",
                                                     "max_client_conn": 100}})
        assert pooler.status_code == 409, pooler.text
        assert pooler.json()["detail"] == ("the cluster is FAILED; pooler needs it ACTIVE "
                                           "or DEGRADED")
        assert tenant.get(f"{path}/backup-schedule").json() is None
        assert tenant.get("/v2/backups", params={"cluster_id": cluster_id}).json()[
            "backups"] == []
        assert tenant.get(path).json() == before
    finally:
        gone = tenant.delete(path)
        assert gone.status_code == 202, gone.text
        wait_operation(tenant, gone.json()["operation"]["id"])
