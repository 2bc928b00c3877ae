"""The cluster page's metric charts in a real browser (Playwright, Debian's
chromium) against a real Hoard sampling a real Redis every second: each chart
is an image named for screen readers with its values, and axe finds nothing
serious on the page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    new_tenant,
    tenant_uri,
)
from tests.test_console import SLOW, Console, browser, console, expect  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hoard() -> Iterator[HoardServer]:
    """This module's own Hoard, sampling every second (the default is 10 s)."""
    with hoard_server({"HOARD_METRICS_INTERVAL": "1"}) as server:
        yield server


def test_cluster_page_charts_its_metrics(console: Console, hoard: HoardServer) -> None:  # noqa: F811
    with hoard.client() as admin:
        token = new_tenant(admin, "console-charts")
    with hoard.client(token) as tenant:
        cluster = create_cluster(tenant, "charted", engine="redis", storage_gb=1)
        client = redis.Redis.from_url(tenant_uri(tenant, cluster["id"]))
        try:
            client.ping()
            console.sign_in(token)
            page = console.page
            page.goto(f"{hoard.url}/#/clusters/{cluster['id']}")
            expect(page.get_by_role("heading", name="Metrics")).to_be_visible()
            for title in ("Connections", "Operations per second", "Storage used"):
                expect(page.get_by_role("img", name=re.compile(
                    rf"^{title} over the last hour\. node 0: now .+, highest .+\.$"))
                ).to_be_visible(timeout=SLOW)
            # A single node has no replication lag to draw.
            expect(page.get_by_text("No replicas.")).to_be_visible()
            console.audit()
            # The area that holds the charts: the charts themselves are redrawn as
            # samples arrive, and a redrawn element is no longer there to capture.
            console.shot("cluster-metrics", of=page.locator("#cluster-metrics"))
            console.check()
        finally:
            client.close()
            delete_cluster(tenant, cluster["id"])
