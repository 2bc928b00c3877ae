"""The console's maintenance window, in a real browser against a real Hoard and a
real Redis server: set from the cluster's page (a refusal shown as the API
words it), shown there and beside settings waiting for a restart, removed."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.conftest import HoardServer, create_cluster, delete_cluster, new_tenant
from tests.test_console import SLOW, Console, browser, console, pytestmark, tenant_client

__all__ = ["browser", "console", "pytestmark"]  # the browser fixtures, and the skip rule


def test_maintenance_window_set_shown_and_removed(console: Console, hoard: HoardServer,
                                                  admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-maint", {"clusters": 1, "nodes": 1, "storage_gb": 1})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "windowed", engine="redis", storage_gb=1)
        path = f"/v2/clusters/{cluster['id']}"
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="windowed", exact=True).click()
            console.wait_active()
            now = page.locator("#window-now")
            expect(now).to_contain_text("No window")

            page.get_by_label("Window day").select_option("sun")
            page.get_by_label("Opens at (UTC)").fill("3:00")
            page.get_by_role("button", name="Save window").click()
            expect(page.get_by_role("alert")).to_contain_text("start '3:00'")
            assert client.get(path).json()["maintenance_window"] is None

            page.get_by_label("Opens at (UTC)").fill("03:30")
            page.get_by_label("Minutes open").fill("90")
            page.get_by_role("button", name="Save window").click()
            expect(now).to_have_text("Window: Sunday at 03:30 UTC, for 90 minutes.")
            assert client.get(path).json()["maintenance_window"] == {
                "day": "sun", "start": "03:30", "duration_minutes": 90}
            console.audit()

            config = client.post("/v2/configurations", json={
                "name": "more-dbs", "engine": "redis", "values": {"databases": 32}}).json()
            client.patch(path, json={"configuration_id": config["id"]})
            expect(page.locator("#pending-restart")).to_contain_text(
                re.compile(r"databases\. Hoard applies them in the maintenance window "
                           r"\(Sunday at 03:30 UTC, for 90 minutes\), or now"), timeout=SLOW)

            page.get_by_role("button", name="Remove window").click()
            expect(now).to_contain_text("No window")
            assert client.get(path).json()["maintenance_window"] is None
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check((path, 422))
