"""The create form's provider choice, in a real browser: shown only where more
than one provider offers the engine, from the catalog; the versions and
fields follow the chosen provider's offer (what it lacks is not asked for).
The second provider is the Kubernetes one on kmock's emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    wait_operation,
)
from tests.kube_support import MockApi, kubeconfig_for, mock_api
from tests.test_console import SLOW, Console, browser, pytestmark

__all__ = ["browser", "pytestmark"]  # the browser fixture, and the skip rule


@pytest.fixture(scope="module")
def two_providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HoardServer]:
    with mock_api() as api:
        assert isinstance(api, MockApi)
        kubeconfig = kubeconfig_for(api.url, tmp_path_factory.mktemp("kube") / "config")
        with hoard_server({"HOARD_KUBECONFIG": str(kubeconfig),
                           # the emulator runs no controllers: no pod ever runs
                           "HOARD_KUBERNETES_START_DEADLINE": "3",
                           "HOARD_KUBERNETES_VERSIONS": "postgresql=16,postgresql=15"}
                          ) as running:
            yield running


def tenant_token(server: HoardServer, name: str) -> str:
    with server.client() as admin:
        return new_tenant(admin, name)


def signed_in(browser: Any, server: HoardServer, token: str) -> tuple[Console, Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    console = Console(context.new_page(), server.url)
    console.sign_in(token)
    return console, context


def open_form(browser: Any, server: HoardServer, name: str) -> tuple[Console, Any]:
    console, context = signed_in(browser, server, tenant_token(server, name))
    console.page.get_by_role("link", name="Create cluster").first.click()
    expect(console.page.get_by_role("heading", name="Create a cluster")).to_be_visible()
    return console, context


def option_texts(select: Any) -> list[str]:
    return [str(t).strip() for t in select.locator("option").all_inner_texts()]


def test_one_provider_offers_no_choice(browser: Any, hoard: HoardServer) -> None:
    console, context = open_form(browser, hoard, "console-one-provider")
    try:
        expect(console.page.get_by_label("Provider")).to_be_hidden()
        console.audit()
        console.check()
    finally:
        context.close()


def test_the_chosen_providers_versions_and_abilities(browser: Any,
                                                    two_providers: HoardServer) -> None:
    console, context = open_form(browser, two_providers, "console-two-providers")
    page = console.page
    try:
        chosen = page.get_by_label("Provider")
        expect(chosen).to_be_visible()
        assert option_texts(chosen) == ["local (default)", "kubernetes"]
        expect(chosen).to_have_value("local")
        assert option_texts(page.get_by_label("Version")) == ["15"]
        expect(page.get_by_label("Pooler mode")).to_be_visible()
        console.audit()

        chosen.select_option("kubernetes")
        assert option_texts(page.get_by_label("Version")) == ["16", "15"]
        expect(page.get_by_label("Nodes")).to_be_enabled()  # replicated clusters offered there
        expect(page.get_by_label("Pooler mode")).to_be_visible()  # offered there
        expect(page.get_by_label("Grow storage up to (GB)")).to_be_visible()  # offered there
        expect(page.get_by_label("Restore from a backup")).to_be_visible()  # offered there
        console.audit()

        # Redis is offered by the local provider alone: no choice to make.
        page.get_by_label("Engine").select_option("redis")
        expect(chosen).to_be_hidden()
        expect(chosen).to_have_value("local")
        expect(page.get_by_label("Nodes")).to_be_enabled()
        expect(page.get_by_label("Grow storage up to (GB)")).to_be_visible()
        console.check()
    finally:
        context.close()


def test_a_clusters_page_offers_only_what_its_provider_does(browser: Any,
                                                           two_providers: HoardServer) -> None:
    """A PostgreSQL cluster has a backups section on either provider (Kubernetes
    offers backups too). The Kubernetes one ends FAILED (the emulator runs no
    pod), as the create says; its page still lists its backups."""
    token = tenant_token(two_providers, "console-provider-pages")
    console, context = signed_in(browser, two_providers, token)
    page = console.page
    made: dict[str, str] = {}
    try:
        with two_providers.client(token) as client:
            made["local"] = create_cluster(client, "here", storage_gb=1)["id"]
            answer = client.post("/v2/clusters", json={"name": "there", "engine": "postgresql",
                                                       "size": "nano", "storage_gb": 1,
                                                       "provider": "kubernetes"})
            assert answer.status_code == 202, answer.text
            made["kubernetes"] = answer.json()["cluster"]["id"]
            assert wait_operation(client, answer.json()["operation"]["id"])["status"] == "failed"
        for provider, status in (("local", "ACTIVE"), ("kubernetes", "FAILED")):
            page.goto(f"{console.url}/#/clusters/{made[provider]}")
            expect(page.get_by_role("heading", name="Events")).to_be_visible()
            expect(page.locator("dl.facts").first.locator(".status")).to_have_text(
                status, timeout=SLOW)
            # The lower sections are drawn together, the delete section last.
            expect(page.get_by_role("button", name="Delete cluster")).to_be_visible()
            backups = page.get_by_role("heading", name="Backups", exact=True)
            expect(backups).to_have_count(1)
            console.audit()
        console.check()
    finally:
        context.close()
        with two_providers.client(token) as client:
            for cluster_id in made.values():
                delete_cluster(client, cluster_id)
