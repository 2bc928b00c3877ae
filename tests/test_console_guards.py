"""Labels, the running operation and deletion protection in the console, in a
real browser against a real Hoard and real Redis servers: the list filtered by
labels, an operation named in the list and on the cluster's page with a link to
its steps, labels edited (a refusal shown against the field), and a protected
cluster's delete refused until the protection is turned off."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant
from tests.test_console import Console, browser, console, gone, pytestmark, tenant_client

__all__ = ["browser", "console", "pytestmark"]  # the browser fixtures, and the skip rule


def show_a_running_operation(console: Console, client: httpx.Client, cluster_id: str) -> None:
    """From the clusters list: the operation running on a cluster is named in its
    row and on its page, and links to its steps. The API's answers are given an
    operation (its create's, as a resize) so the check does not race a real one."""
    page = console.page
    events = client.get(f"/v2/clusters/{cluster_id}/events").json()["events"]
    op_id = next(e["operation_id"] for e in events if e["operation_id"])
    views = re.compile(rf"/v2/clusters(/{cluster_id})?(\?.*)?$")

    def resizing(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for view in body.get("clusters", [body]):
            if view["id"] == cluster_id:
                view["operation"] = {"id": op_id, "kind": "resize"}
        route.fulfill(response=response, json=body)

    page.route(views, resizing)
    link = console.row("kept").get_by_role("link", name="resizing…")
    expect(link).to_be_visible()
    link.click()
    expect(page.locator("#op-title")).to_be_focused()
    expect(page.locator("#op-title")).to_contain_text("create: succeeded")
    facts = page.locator("dl.facts").first
    expect(facts.get_by_role("link", name="resizing…")).to_be_visible()
    page.unroute(views, resizing)
    expect(facts).to_contain_text("none running")
    page.go_back()


def test_labels_filter_and_deletion_protection(console: Console, hoard: HoardServer,
                                               admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-guard", {"clusters": 2, "nodes": 2, "storage_gb": 2})
    with tenant_client(hoard, token) as client:
        kept = create_cluster(client, "kept", engine="redis", storage_gb=1,
                              labels={"env": "prod"}, deletion_protection=True)
        other = create_cluster(client, "other", engine="redis", storage_gb=1,
                               labels={"env": "dev"})
        try:
            page = console.page
            console.sign_in(token)
            expect(console.row("other")).to_be_visible()
            show_a_running_operation(console, client, kept["id"])
            page.get_by_label("Labels").fill("env=prod")
            page.get_by_label("Labels").press("Enter")
            expect(console.row("kept")).to_contain_text("env=prod")
            expect(console.row("other")).to_have_count(0)
            assert "label=env%3Dprod" in page.url or "label=env=prod" in page.url
            console.audit()

            page.get_by_role("link", name="kept", exact=True).click()
            console.wait_active()

            # Labels edited on the page; a refusal is shown against the field.
            labels = page.get_by_label("Cluster labels")
            expect(labels).to_have_value("env=prod")
            labels.fill("env=prod, Team=db")
            page.get_by_role("button", name="Save labels").click()
            expect(page.get_by_role("alert")).to_contain_text("bad label key 'Team'")
            expect(labels).to_have_attribute("aria-invalid", "true")
            expect(labels).to_have_accessible_description(re.compile("bad label"))
            labels.fill("env=prod, team=db")
            page.get_by_role("button", name="Save labels").click()
            expect(page.get_by_text("Labels saved.")).to_be_visible()
            expect(labels).not_to_have_attribute("aria-invalid", "true")
            expect(page.locator("dl.facts ul.labels").last).to_contain_text("team=db")
            assert client.get(f"/v2/clusters/{kept['id']}").json()["labels"] == {
                "env": "prod", "team": "db"}

            switch = page.get_by_role("switch", name="Deletion protection")
            expect(switch).to_have_attribute("aria-checked", "true")
            page.get_by_label(re.compile("Type the cluster's name")).fill("kept")
            page.get_by_role("button", name="Delete cluster").click()
            expect(page.get_by_role("alert")).to_contain_text("deletion protection on")
            console.audit()
            switch.click()
            expect(switch).to_have_attribute("aria-checked", "false")
            assert client.get(f"/v2/clusters/{kept['id']}").json()["deletion_protection"] is False
            console.delete_here("kept")
        finally:
            for c in (kept, other):
                if client.get(f"/v2/clusters/{c['id']}").status_code == 200:
                    delete_cluster(client, c["id"])
    console.check((f"/v2/clusters/{kept['id']}", 422), (f"/v2/clusters/{kept['id']}", 409),
                  *gone(kept["id"]))
