"""/metrics: Prometheus text, admin only."""

from __future__ import annotations

import os

import httpx

from tests.conftest import HoardServer, new_tenant


def test_metrics_need_admin_and_count_clusters(hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, f"metrics-{os.getpid()}")
    with hoard.client(token) as tenant:
        assert tenant.get("/metrics").status_code == 403
    admin.get("/v2/sizes")
    body = admin.get("/metrics").text
    assert 'hoard_http_requests_total{method="GET",route="/v2/sizes",status="200"}' in body
    assert "hoard_operations_running" in body
