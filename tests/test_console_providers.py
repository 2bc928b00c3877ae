"""The create form's provider choice, in a real browser: shown only where more
than one provider offers the engine, from the catalog; the versions and
fields follow the chosen provider's offer (what it lacks is not asked for).
The second provider is the Kubernetes one on kmock's emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import HoardServer, hoard_server, new_tenant
from tests.kube_support import MockApi, kubeconfig_for, mock_api
from tests.test_console import Console, browser, pytestmark

__all__ = ["browser", "pytestmark"]  # the browser fixture, and the skip rule


@pytest.fixture(scope="module")
def two_providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HoardServer]:
    with mock_api() as api:
        assert isinstance(api, MockApi)
        kubeconfig = kubeconfig_for(api.url, tmp_path_factory.mktemp("kube") / "config")
        with hoard_server({"HOARD_KUBECONFIG": str(kubeconfig),
                           "HOARD_KUBERNETES_VERSIONS": "postgresql=16,postgresql=15"}
                          ) as running:
            yield running


def open_form(browser: Any, server: HoardServer) -> tuple[Console, Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    with server.client() as admin:
        token = new_tenant(admin, "console-providers")
    console = Console(context.new_page(), server.url)
    console.sign_in(token)
    console.page.get_by_role("link", name="Create cluster").first.click()
    expect(console.page.get_by_role("heading", name="Create a cluster")).to_be_visible()
    return console, context


def option_texts(select: Any) -> list[str]:
    return [str(t).strip() for t in select.locator("option").all_inner_texts()]


def test_one_provider_offers_no_choice(browser: Any, hoard: HoardServer) -> None:
    console, context = open_form(browser, hoard)
    try:
        expect(console.page.get_by_label("Provider")).to_be_hidden()
        console.audit()
        console.check()
    finally:
        context.close()


def test_the_chosen_providers_versions_and_abilities(browser: Any,
                                                    two_providers: HoardServer) -> None:
    console, context = open_form(browser, two_providers)
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
        expect(page.get_by_label("Nodes")).to_be_disabled()  # no replicated clusters there
        expect(page.get_by_label("Pooler mode")).to_be_hidden()
        expect(page.get_by_label("Grow storage up to (GB)")).to_be_hidden()
        expect(page.get_by_label("Restore from a backup")).to_be_hidden()
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
