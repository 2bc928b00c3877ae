"""The web console in a real browser (Playwright driving Debian's chromium,
headless) against a real Hoard with real Redis servers: sign in, create through
the form, watch, open, users, backups, restore, delete; configurations, backup
schedules, the restorable window's timeline; tenants kept apart; the operator's
projects view (labels and deletion protection: tests/test_console_guards.py).
Every page is also checked for browser console errors."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, HoardServer, create_cluster, delete_cluster, new_tenant

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no browser at {CHROMIUM} (Debian's chromium; `make test` "
                              "installs it)"),
]

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
Page = playwright_api.Page

SLOW = 180_000  # ms: a cluster to build, a backup to finish (the machine may be busy)
expect.set_options(timeout=30_000)  # anything else; other tests may share the machine
RESOURCE_ERROR = re.compile(r"Failed to load resource: the server responded with a status of "
                            r"(\d+)")
# Screenshots of the main pages; `HOARD_SCREENSHOTS=docs/screenshots` refreshes the README's.
SCREENSHOTS = Path(os.environ.get("HOARD_SCREENSHOTS")
                   or Path(tempfile.gettempdir()) / "hoard-console-screenshots")
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"


def gone(cluster_id: str | None) -> tuple[tuple[str, int], ...]:
    """The refusals a page showing a cluster may meet once a delete removes it: the
    cluster's own 404, and its events' when the cluster goes between the two reads of
    one refresh (the page then says it no longer exists)."""
    return ((f"/v2/clusters/{cluster_id}", 404), (f"/v2/clusters/{cluster_id}/events", 404))


class Console:
    """A browser tab on the console that records every console error and page error.
    A refused API call is logged by the browser itself as 'Failed to load resource';
    a test names the ones it expects (path, status), and any other fails it."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.refusals: list[tuple[str, int]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        found = RESOURCE_ERROR.match(text)
        if found:
            path = urlparse(message.location.get("url", "")).path
            self.refusals.append((path, int(found.group(1))))
        else:
            self.errors.append(text)

    def check(self, *expected: tuple[str, int]) -> None:
        """No error in the browser's console but the API refusals the test expected."""
        assert self.errors == []
        assert set(self.refusals) <= set(expected), self.refusals

    def sign_in(self, token: str) -> None:
        self.page.goto(self.url + "/")
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Clusters", exact=True)).to_be_visible()

    def shot(self, name: str, of: Any = None) -> None:
        """A screenshot of the page's top, or of one part of it (``of``, a locator),
        for the README (see SCREENSHOTS). Not full-page: Chromium resizes the view
        for that, and the next click may land off its target."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if of is not None:
            of.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
            return
        self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def audit(self) -> None:
        """axe-core (npm, tests/a11y/) on the page as it is: no serious or critical
        violation. Evaluated through the browser's protocol, so the page's
        Content-Security-Policy stays in force."""
        assert AXE.exists(), f"{AXE} is missing: `make setup` installs it (npm ci)"
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text())
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} at "
               f"{[n['target'] for n in v['nodes']][:3]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], bad

    def row(self, name: str) -> Any:
        return self.page.get_by_role("row").filter(
            has=self.page.get_by_role("link", name=name, exact=True))

    def wait_active(self) -> None:
        """On a cluster page: until its status says ACTIVE."""
        facts = self.page.locator("dl.facts").first
        expect(facts.locator(".status")).to_have_text("ACTIVE", timeout=SLOW)

    def leave(self) -> None:
        """Off the page before a test deletes what it shows through the API, so the
        page's polling never meets the deletion halfway (a 404 the test did not ask
        the page to see)."""
        self.page.goto("about:blank")

    def delete_here(self, name: str) -> None:
        """On a cluster page: delete it with the typed confirmation, until it is gone."""
        button = self.page.get_by_role("button", name="Delete cluster")
        confirm = self.page.get_by_label(re.compile("Type the cluster's name"))
        confirm.fill(name + "x")
        expect(button).to_be_disabled()
        confirm.fill(name)
        expect(button).to_be_enabled()
        button.click()
        expect(self.page.get_by_text("This cluster no longer exists")).to_be_visible(
            timeout=SLOW)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"],
                                     headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser: Any, hoard: HoardServer) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    try:
        yield Console(context.new_page(), hoard.url)
    finally:
        context.close()


def tenant_client(hoard: HoardServer, token: str) -> httpx.Client:
    return hoard.client(token)


def test_page_and_files_are_served_to_browsers_only(hoard: HoardServer) -> None:
    page = httpx.get(hoard.url + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/console/js/app.js">' in page.text
    script = httpx.get(hoard.url + "/console/js/app.js")  # no token: the files are public
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(hoard.url + "/console/nothing.js").status_code == 404
    assert httpx.get(hoard.url + "/console/%2e%2e/__init__.py").status_code == 404
    versions = httpx.get(hoard.url + "/", headers={"Accept": "application/json"})
    assert versions.json()["versions"][0]["id"] == "v1.0"
    assert httpx.get(hoard.url + "/v2/clusters").status_code == 401  # the API still asks


def test_a_wrong_token_is_refused(console: Console) -> None:
    page = console.page
    page.goto(console.url + "/")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That token is not valid")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    console.shot("sign-in")
    console.audit()
    console.check(("/v2/whoami", 401))


def test_redis_cluster_from_create_to_delete(console: Console, hoard: HoardServer,
                                             admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-flow", {"clusters": 5, "nodes": 5, "storage_gb": 10})
    page = console.page
    console.sign_in(token)
    expect(page.locator("#who")).to_have_text("Signed in as console-flow")
    expect(page.get_by_text("No clusters here yet")).to_be_visible()

    # The form shows the API's refusal inline, and the field it names.
    page.get_by_role("link", name="Create cluster").first.click()
    page.get_by_label("Name").fill("Not A Name")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("alert")).to_contain_text("name 'Not A Name' must match")
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).to_have_accessible_description(
        re.compile("must match"))
    console.audit()

    page.get_by_label("Name").fill("cache")
    page.get_by_label("Engine").select_option("redis")
    page.get_by_label("Size").select_option("nano")
    page.get_by_label("Storage (GB)").fill("1")
    page.get_by_label("Grow storage up to (GB)").fill("2")
    expect(page.get_by_label("Pooler mode")).to_be_hidden()  # PostgreSQL only
    console.shot("create")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("heading", name="cache", exact=True)).to_be_visible()

    # The list follows its status until ACTIVE; the row shows what it is.
    page.get_by_role("link", name="Clusters", exact=True).click()
    row = console.row("cache")
    expect(row.locator(".status")).to_have_text("ACTIVE", timeout=SLOW)
    expect(row).to_contain_text("redis")
    expect(row).to_contain_text("nano")
    console.shot("clusters")
    console.audit()
    page.get_by_label("Engine").select_option("postgresql")
    expect(page.get_by_text("No clusters here yet")).to_be_visible()
    page.get_by_label("Engine").select_option("")
    page.get_by_label("Status").select_option("ACTIVE")
    page.get_by_role("link", name="cache", exact=True).click()

    expect(page.get_by_role("heading", name="cache", exact=True)).to_be_visible()
    console.wait_active()
    cluster_id = page.url.rsplit("/", 1)[-1]
    with tenant_client(hoard, token) as client:
        password = client.get(f"/v2/clusters/{cluster_id}/credentials").json()["password"]
        assert client.get(f"/v2/clusters/{cluster_id}").json()["storage_autoscale"] == {
            "max_gb": 2, "threshold_percent": 80}

    # The password appears only when asked for.
    page.get_by_role("button", name="Show connection details").click()
    uri = page.locator("#connection-uri")
    expect(uri).to_contain_text("rediss://")
    expect(uri).not_to_contain_text(password)
    page.get_by_role("button", name="Reveal password").click()
    expect(uri).to_contain_text(password)

    # A user, created and shown with its password once.
    page.get_by_label("User name").fill("app")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("Password for app (shown only now)")).to_be_visible(timeout=SLOW)
    expect(page.get_by_role("row", name=re.compile(r"^app\b"))).to_be_visible()

    # A backup, taken and listed.
    page.get_by_role("button", name="Take a backup").click()
    expect(page.get_by_text("Backup taken.")).to_be_visible(timeout=SLOW)
    backups = page.get_by_role("table", name="Backups")
    expect(backups.locator(".status")).to_have_text("available")
    page.get_by_role("button", name="Hide password").click()
    expect(uri).not_to_contain_text(password)
    console.shot("cluster")
    console.audit()

    # Redis keeps no change log: no restore to a point in time is offered.
    expect(page.get_by_role("button", name=re.compile("Restore to this time"))).to_have_count(0)
    expect(page.get_by_role("img", name=re.compile("Restorable window"))).to_have_count(0)

    # Restored from the backup into a new cluster through the create form.
    page.get_by_role("link", name=re.compile("into a new cluster")).click()
    expect(page.get_by_label("Name")).to_have_value("cache-restored")
    expect(page.get_by_label("Restore from a backup")).not_to_have_value("")
    page.get_by_label("Storage (GB)").fill("1")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("heading", name="cache-restored")).to_be_visible()
    console.wait_active()
    restored_url = page.url

    # A restart, followed through its operation.
    page.get_by_role("button", name="Restart").click()
    expect(page.locator("#op-title")).to_contain_text("restart: succeeded", timeout=SLOW)
    console.wait_active()

    # Keyset paging: one cluster a page, the next link goes on (oldest first).
    page.goto(console.url + "/#/clusters?limit=1")
    for name in ("cache", "cache-restored"):
        expect(console.row(name)).to_be_visible()
        expect(page.get_by_role("row")).to_have_count(2)  # the header and this one
        if name != "cache-restored":
            page.get_by_role("link", name="Next page").click()
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)

    page.goto(restored_url)
    console.delete_here("cache-restored")
    page.goto(console.url + f"/#/clusters/{cluster_id}")
    console.wait_active()
    console.delete_here("cache")
    page.get_by_role("link", name="Back to all clusters").click()
    expect(page.get_by_text("No clusters here yet")).to_be_visible()
    # The token stays in this tab's session storage: never in the address or elsewhere.
    assert token not in page.url
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    restored_id = restored_url.rsplit("/", 1)[-1]
    # The page learns that a deleted cluster is gone from the API's 404.
    console.check(("/v2/clusters", 422),
                  *gone(cluster_id), *gone(restored_id))


def test_projects_see_only_their_own_clusters(console: Console, hoard: HoardServer,
                                              admin: httpx.Client, browser: Any) -> None:
    first = new_tenant(admin, "console-first")
    second = new_tenant(admin, "console-second")
    with tenant_client(hoard, first) as client:
        cluster = create_cluster(client, "first-only", engine="redis", storage_gb=1)
        try:
            # Signed in by keyboard alone, on a phone-sized screen.
            page = console.page
            page.set_viewport_size(PHONE)
            page.goto(console.url + "/")
            expect(page.get_by_label("Token")).to_be_focused()
            page.keyboard.type(second)
            page.keyboard.press("Enter")
            expect(page.get_by_text("No clusters here yet")).to_be_visible()
            page.goto(console.url + f"/#/clusters/{cluster['id']}")
            expect(page.get_by_role("alert")).to_contain_text("no cluster")
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Token")).to_be_visible()

            console.sign_in(first)
            expect(console.row("first-only")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0
            console.shot("clusters-phone")
            console.audit()
            page.get_by_role("button", name="Sign out").click()
            assert page.evaluate("sessionStorage.length") == 0
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check(*gone(cluster["id"]))


def test_admin_creates_a_project_and_a_token(console: Console) -> None:
    page = console.page
    console.sign_in(ADMIN_TOKEN)
    expect(page.locator("#who")).to_have_text("Signed in as admin admin")  # name, badge
    page.get_by_role("link", name="Projects").click()
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    page.get_by_label("Project name").fill("console-made")
    page.get_by_label("Clusters quota").fill("2")
    page.get_by_label("Nodes quota").fill("3")
    page.get_by_label("Storage quota (GB)").fill("20")
    page.get_by_role("button", name="Create project").click()
    row = page.get_by_role("row", name=re.compile("^console-made"))
    expect(row).to_contain_text("0 / 2")
    row.get_by_role("button", name="New token for console-made").click()
    notice = page.get_by_text("Token for console-made (shown only now")
    expect(notice).to_be_visible()
    token = notice.locator("code").inner_text()
    page.get_by_label("Project name").fill("console-made")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    console.shot("projects")
    console.audit()
    page.get_by_role("button", name="Sign out").click()
    console.sign_in(token)  # the new project's token works at once
    expect(page.get_by_role("link", name="Projects")).to_be_hidden()
    expect(page.locator("#who")).to_have_text("Signed in as console-made")
    console.check(("/v2/projects", 409))


def test_postgresql_databases_users_and_point_in_time_restore(
        console: Console, hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-sql", {"clusters": 2, "nodes": 2, "storage_gb": 4})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "ledger", storage_gb=1)
        restored_id = None
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="ledger", exact=True).click()
            console.wait_active()

            page.get_by_label("Database name").fill("shop")
            page.get_by_role("button", name="Create database").click()
            databases = page.get_by_role("table", name="Databases")
            expect(databases.get_by_role("row", name=re.compile(r"^shop\b"))).to_be_visible(
                timeout=SLOW)

            page.get_by_label("User name").fill("clerk")
            page.get_by_label("Grant databases").fill("shop")
            page.get_by_role("button", name="Create user").click()
            expect(page.get_by_text("Password for clerk (shown only now)")).to_be_visible(
                timeout=SLOW)
            users = page.get_by_role("table", name="Users")
            clerk = users.get_by_role("row", name=re.compile(r"^clerk\b"))
            expect(clerk).to_contain_text("shop")
            page.get_by_role("button", name="Revoke shop from clerk").click()
            expect(clerk).to_contain_text("none", timeout=SLOW)
            page.get_by_label("Grant to user").select_option("clerk")
            page.get_by_label("Database to grant").fill("shop")
            page.get_by_role("button", name="Grant", exact=True).click()
            expect(clerk.get_by_role("button", name="Revoke shop from clerk")).to_be_visible(
                timeout=SLOW)
            expect(page.get_by_text("Password for clerk")).to_have_count(0)  # shown once
            page.get_by_role("button", name="Rotate password of clerk").click()
            expect(page.get_by_text("Password for clerk (shown only now)")).to_be_visible(
                timeout=SLOW)
            page.get_by_role("button", name="Delete user clerk").click()
            page.get_by_role("button", name="Yes, delete").click()
            expect(clerk).to_have_count(0, timeout=SLOW)
            console.audit()

            # The server's log, read from the page.
            page.get_by_role("button", name="Show log").click()
            log = page.get_by_role("list", name="server log, oldest first")
            expect(log.get_by_role("listitem").first).to_be_visible()

            # Storage autoscaling: a refusal inline, then set at once.
            page.get_by_label("Grow storage up to (GB)").fill("2")
            page.get_by_label("Grow past (% used)").fill("95")
            page.get_by_role("button", name="Save autoscaling").click()
            expect(page.get_by_role("alert")).to_contain_text("threshold_percent")
            page.get_by_label("Grow past (% used)").fill("85")
            page.get_by_role("button", name="Save autoscaling").click()
            expect(page.get_by_text("past 85% used, up to 2 GB per node")).to_be_visible()
            assert client.get(f"/v2/clusters/{cluster['id']}").json()["storage_autoscale"] == {
                "max_gb": 2, "threshold_percent": 85}

            # The pooler, opened through its operation; its endpoint is listed.
            page.get_by_label("Pooler mode").select_option("transaction")
            page.get_by_label("Most client connections").fill("100")
            page.get_by_role("button", name="Save pooler").click()
            expect(page.locator("#op-title")).to_contain_text("pooler: succeeded",
                                                              timeout=SLOW)
            expect(page.get_by_text(re.compile(r":6432 pooler"))).to_be_visible(timeout=SLOW)
            console.audit()

            page.get_by_role("button", name="Take a backup").click()
            expect(page.get_by_text("Backup taken.")).to_be_visible(timeout=SLOW)
            page.get_by_role("button", name="Restore to this time in a new cluster").click()
            expect(page.get_by_text("Restoring ledger as it was at")).to_be_visible()
            expect(page.get_by_label("Engine")).to_be_disabled()
            page.get_by_label("Size").select_option("nano")
            page.get_by_label("Storage (GB)").fill("1")
            page.get_by_role("button", name="Create cluster").click()
            expect(page.get_by_role("heading", name="ledger-then")).to_be_visible()
            restored_id = page.url.rsplit("/", 1)[-1]
            console.wait_active()
            databases = page.get_by_role("table", name="Databases")
            expect(databases.get_by_role("row", name=re.compile(r"^shop\b"))).to_be_visible()
            console.delete_here("ledger-then")
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check(*gone(restored_id), (f"/v2/clusters/{cluster['id']}", 422))


def test_replicated_cluster_members_and_switchover(console: Console, hoard: HoardServer,
                                                    admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-ha", {"clusters": 1, "nodes": 3, "storage_gb": 3})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "sessions", engine="redis", nodes=3, storage_gb=1)
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="sessions", exact=True).click()
            console.wait_active()
            members = page.get_by_role("table", name="Members")
            expect(members.get_by_role("row")).to_have_count(4)  # the header and 3 nodes
            expect(members.get_by_role("cell", name="primary", exact=True)).to_have_count(1)
            replica = members.get_by_role("row").filter(
                has=page.get_by_role("button", name="Make primary")).first
            ordinal = replica.get_by_role("rowheader").inner_text()
            console.audit()
            replica.get_by_role("button", name="Make primary").click()
            expect(page.get_by_text(f"Switchover to node {ordinal} started")).to_be_visible()
            expect(page.locator("#op-title")).to_contain_text("switchover: succeeded",
                                                              timeout=SLOW)
            chosen = members.get_by_role("row", name=re.compile(f"^{ordinal} "))
            expect(chosen.get_by_role("cell", name="primary", exact=True)).to_be_visible(
                timeout=SLOW)
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check()


def test_configuration_attached_and_restart_applies_it(console: Console, hoard: HoardServer,
                                                       admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-conf", {"clusters": 1, "nodes": 1, "storage_gb": 2})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "tuned", storage_gb=1)
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="tuned", exact=True).click()
            console.wait_active()
            expect(page.get_by_text("No configuration attached.")).to_be_visible()
            work_mem = page.get_by_label("work_mem", exact=True)
            expect(work_mem).to_have_accessible_description(re.compile("Applied live"))
            expect(page.get_by_label("max_connections", exact=True)
                   ).to_have_accessible_description(re.compile("Needs a restart"))

            # A value out of bounds: the API's refusal, shown inline.
            work_mem.fill("1")
            page.get_by_role("button", name="Create and attach").click()
            expect(page.get_by_role("alert")).to_contain_text("work_mem")
            console.audit()

            work_mem.fill("8192")
            page.get_by_label("max_connections", exact=True).fill("60")
            page.get_by_role("button", name="Create and attach").click()
            expect(page.locator("#op-title")).to_contain_text("update: succeeded",
                                                              timeout=SLOW)
            pending = page.locator("#pending-restart")
            expect(pending).to_contain_text("max_connections", timeout=SLOW)
            expect(pending).not_to_contain_text("work_mem")
            expect(page.get_by_text(re.compile("Attached: tuned-settings"))).to_be_visible(
                timeout=SLOW)
            console.wait_active()
            console.audit()
            page.get_by_role("button", name="Restart now").click()
            expect(page.locator("#op-title")).to_contain_text("restart: succeeded",
                                                              timeout=SLOW)
            expect(pending).to_have_count(0, timeout=SLOW)
            console.wait_active()
            view = client.get(f"/v2/clusters/{cluster['id']}").json()
            assert view["configuration_id"] and view["pending_restart"] == []

            page.get_by_role("button", name="Detach configuration").click()
            expect(page.get_by_text("No configuration attached.")).to_be_visible(timeout=SLOW)
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check(("/v2/configurations", 422))


def test_backup_schedule_set_shown_and_removed(console: Console, hoard: HoardServer,
                                               admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-sched", {"clusters": 1, "nodes": 1, "storage_gb": 1})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "nightly", engine="redis", storage_gb=1)
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="nightly", exact=True).click()
            console.wait_active()
            now = page.locator("#schedule-now")
            expect(now).to_have_text("No schedule.")
            page.get_by_label("Schedule (cron, UTC)").fill("not a cron")
            page.get_by_role("button", name="Save schedule").click()
            expect(page.get_by_role("alert")).to_be_visible()
            page.get_by_label("Schedule (cron, UTC)").fill("30 2 * * *")
            page.get_by_label("Keep the newest").fill("5")
            page.get_by_label("Keep days").fill("14")
            page.get_by_label("Verify the newest backup").fill("daily")
            page.get_by_role("button", name="Save schedule").click()
            expect(page.get_by_text("Schedule saved.")).to_be_visible()
            expect(now).to_contain_text("30 2 * * *")
            expect(now).to_contain_text("newest 5 and nothing older than 14 days")
            expect(now).to_contain_text("Verifies the newest backup daily")
            assert client.get(f"/v2/clusters/{cluster['id']}/backup-schedule").json()[
                "verify"] == "daily"
            console.audit()
            # Read back from Hoard, as another tab or the API set it.
            client.put(f"/v2/clusters/{cluster['id']}/backup-schedule",
                       json={"cron": "15 4 * * *", "keep_last": 3, "keep_days": None})
            page.reload()
            expect(page.locator("#schedule-now")).to_contain_text("15 4 * * *")
            expect(page.get_by_label("Keep the newest")).to_have_value("3")
            expect(page.get_by_label("Verify the newest backup")).to_have_value("")
            page.get_by_role("button", name="Remove schedule").click()
            expect(page.get_by_text("Schedule removed.")).to_be_visible()
            expect(page.locator("#schedule-now")).to_have_text("No schedule.")
            assert client.get(f"/v2/clusters/{cluster['id']}/backup-schedule").json() is None
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check((f"/v2/clusters/{cluster['id']}/backup-schedule", 422))


def test_restorable_window_timeline(console: Console, hoard: HoardServer,
                                    admin: httpx.Client) -> None:
    token = new_tenant(admin, "console-window", {"clusters": 1, "nodes": 1, "storage_gb": 1})
    with tenant_client(hoard, token) as client:
        cluster = create_cluster(client, "history", storage_gb=1)
        try:
            page = console.page
            console.sign_in(token)
            page.get_by_role("link", name="history", exact=True).click()
            console.wait_active()
            page.get_by_role("button", name="Take a backup").click()
            expect(page.get_by_text("Backup taken.")).to_be_visible(timeout=SLOW)
            drawing = page.get_by_role("img", name=re.compile("^Restorable window: from"))
            expect(drawing).to_be_visible()
            picker = page.get_by_label("Restore to (your time zone)")
            earliest = picker.get_attribute("min")
            assert earliest
            picker.fill(earliest)
            expect(drawing).to_have_accessible_name(re.compile("; chosen: "))
            console.audit()
        finally:
            console.leave()
            delete_cluster(client, cluster["id"])
    console.check()
