"""The CLI's guard rails against a real Hoard and a real Redis server: a change's
plan (``--dry-run``, nothing changed), the maintenance window, and applying
pending settings at once."""

from __future__ import annotations

import os

import httpx

from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    new_tenant,
    wait_operation,
)
from tests.test_cli import as_json, hoard_cli


def test_cli_dry_run_window_and_apply_pending(hoard: HoardServer, admin: httpx.Client) -> None:
    token = new_tenant(admin, f"cli-guard-{os.getpid()}")
    with hoard.client(token) as client:
        cluster = create_cluster(client, "cli-guarded", engine="redis", storage_gb=1)
        try:
            plan = as_json(hoard_cli(hoard, token, "cluster", "resize", "cli-guarded",
                                     "--size", "small", "--dry-run", "-o", "json"))
            assert plan["changes"][0]["field"] == "size" and plan["operation"] == "update"
            shown = hoard_cli(hoard, token, "cluster", "resize", "cli-guarded",
                              "--storage-gb", "2", "--dry-run")
            assert shown.returncode == 0, shown.stderr
            assert "Plan (nothing changed)" in shown.stdout and "downtime" in shown.stdout
            assert client.get(f"/v2/clusters/{cluster['id']}").json()["storage_gb"] == 1

            windowed = as_json(hoard_cli(hoard, token, "cluster", "window", "cli-guarded",
                                         "--day", "sat", "--start", "02:00", "-o", "json"))
            assert windowed["maintenance_window"] == {"day": "sat", "start": "02:00",
                                                      "duration_minutes": 60}
            bad = hoard_cli(hoard, token, "cluster", "window", "cli-guarded", "--remove",
                            "--day", "sat")
            assert bad.returncode == 2 and "give --day and --start, or --remove" in bad.stderr
            removed = as_json(hoard_cli(hoard, token, "cluster", "window", "cli-guarded",
                                        "--remove", "-o", "json"))
            assert removed["maintenance_window"] is None

            nothing = hoard_cli(hoard, token, "cluster", "apply-pending", "cli-guarded")
            assert nothing.returncode == 1 and "nothing waits for a restart" in nothing.stderr
            config = client.post("/v2/configurations", json={
                "name": "cli-dbs", "engine": "redis", "values": {"databases": 20}}).json()
            attached = client.patch(f"/v2/clusters/{cluster['id']}",
                                    json={"configuration_id": config["id"]})
            assert wait_operation(client, attached.json()["operation"]["id"])["status"] == (
                "succeeded")
            applied = as_json(hoard_cli(hoard, token, "cluster", "apply-pending", "cli-guarded",
                                        "-o", "json"))
            assert applied["pending_restart"] == [] and applied["status"] == "ACTIVE"
        finally:
            delete_cluster(client, cluster["id"])
