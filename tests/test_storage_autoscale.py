"""Storage autoscaling: the rules on their own, bad input refused with nothing
changed, then a real PostgreSQL cluster whose volume fills: it grows by one
step with its server up (same server, an open connection kept) and, at
max_gb, says once that it cannot grow further."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from hoard.domain.autoscale import Policy, decide, next_size
from hoard.domain.storage import GIB, StorageUsage
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    new_tenant,
    tenant_uri,
    wait_operation,
)


def test_the_step_and_when_it_is_taken() -> None:
    assert [next_size(n, 1000) for n in (1, 2, 3, 5, 8, 10, 100)] == [
        2, 3, 5, 8, 12, 15, 150]
    assert next_size(8, 10) == 10  # capped at max_gb
    policy = Policy.of({"max_gb": 3})
    assert policy.threshold_percent == 80
    used = [(0, StorageUsage(50, 100)), (1, StorageUsage(79, 100))]
    assert decide(2, policy, used) is None
    assert decide(2, policy, [*used, (2, None)]) is None  # not yet observed
    grow = decide(2, policy, [*used, (2, StorageUsage(85, 100))])
    assert grow is not None and grow.grow_to == 3
    assert grow.reason == ("node 2: storage 85% used, past the autoscaling threshold of 80%: "
                           "growing storage from 2 to 3 GB (max 3 GB)")
    at_max = decide(3, policy, [(0, StorageUsage(90, 100))])
    assert at_max is not None and at_max.grow_to is None
    assert "cannot grow further" in at_max.reason
    assert decide(3, Policy.of({"max_gb": 3, "threshold_percent": 95}),
                  [(0, StorageUsage(90, 100))]) is None


def _view(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v2/clusters/{cluster_id}").json())


def _events(client: httpx.Client, cluster_id: str, prefix: str = "storage.autoscale"
            ) -> list[tuple[str, str]]:
    found = client.get(f"/v2/clusters/{cluster_id}/events").json()["events"]
    return [(e["kind"], e["message"]) for e in found if e["kind"].startswith(prefix)]


def _until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _fill_to(path: str, root: str, percent: float) -> None:
    """Blocks really taken beside the server's files, up to ``percent`` of the
    filesystem, added past the filler's end (see test_storage_alarms)."""
    st = os.statvfs(root)
    total, used = st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        end = os.fstat(fd).st_size
        more = int(total * percent / 100) - used
        if more > 0:
            os.posix_fallocate(fd, end, more)
    finally:
        os.close(fd)


def _cli(server: HoardServer, token: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "HOARD_URL": server.url, "HOARD_TOKEN": token}
    proc = subprocess.run([sys.executable, "-m", "hoard", "cluster", *args, "-o", "json"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


REFUSED = [
    ({"storage_autoscale": {"max_gb": 0}}, 422, "max_gb"),
    ({"storage_autoscale": {"max_gb": 2, "threshold_percent": 99}}, 422, "threshold_percent"),
    ({"storage_autoscale": {"max_gb": 2, "step": 5}}, 422, "step"),
    ({"storage_autoscale": {"max_gb": 4}}, 403, "storage_autoscale.max_gb 4 GB"),
    ({"storage_autoscale": {"max_gb": 2}, "size": "small"}, 422, "on their own"),
    ({"storage_gb": 3}, 422, "past storage_autoscale.max_gb"),
]


def test_a_filling_volume_grows_with_its_server_up_and_stops_at_max(
        admin: httpx.Client, hoard: HoardServer) -> None:
    token = new_tenant(admin, f"autoscale-{time.monotonic_ns()}",
                       {"clusters": 2, "nodes": 2, "storage_gb": 3})
    with hoard.client(token) as client:
        refused = client.post("/v2/clusters", json={
            "name": "small", "engine": "postgresql", "size": "nano", "storage_gb": 2,
            "storage_autoscale": {"max_gb": 1}})
        assert refused.status_code == 422 and "at least the cluster's storage_gb" in (
            refused.json()["detail"]), refused.text
        assert client.get("/v2/clusters").json()["clusters"] == []
        cluster = create_cluster(client, "autoscaled", storage_gb=1,
                                 storage_autoscale={"max_gb": 2})
        cid, node = cluster["id"], cluster["members"][0]
        root = str(hoard.state_dir / "nodes" / node["id"])
        filler = os.path.join(root, "filler")
        try:
            assert cluster["storage_autoscale"] == {"max_gb": 2, "threshold_percent": 80}
            listed = client.get("/v2/clusters").json()["clusters"]
            assert [c["storage_autoscale"] for c in listed] == [cluster["storage_autoscale"]]
            if "grown while mounted" not in node["limits"]["storage"]:
                pytest.skip("volumes cannot grow mounted here: " + node["limits"]["storage"])
            for body, status, words in REFUSED:
                for url in (f"/v2/clusters/{cid}?dry_run=true", f"/v2/clusters/{cid}"):
                    answer = client.patch(url, json=body)
                    assert answer.status_code == status and words in answer.text, (
                        body, answer.text)
            dry = client.patch(f"/v2/clusters/{cid}?dry_run=true", json={
                "storage_autoscale": {"max_gb": 2, "threshold_percent": 85}})
            assert dry.status_code == 200, dry.text
            assert [(c["field"], c["applies"]) for c in dry.json()["plan"]["changes"]] == [
                ("storage_autoscale", "at_once")]
            view = _view(client, cid)
            assert (view["storage_gb"], view["storage_autoscale"]) == (
                1, {"max_gb": 2, "threshold_percent": 80})

            with psycopg.connect(tenant_uri(client, cid), autocommit=True) as conn:
                started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
                _fill_to(filler, root, 86)
                kind, message = _until(lambda: _events(client, cid))[0]
                assert kind == "storage.autoscaled", message
                assert message.endswith("past the autoscaling threshold of 80%: growing "
                                        "storage from 1 to 2 GB (max 2 GB)"), message
                op_id = next(e["operation_id"] for e in client.get(
                    f"/v2/clusters/{cid}/events").json()["events"]
                    if e["kind"] == "storage.autoscaled")
                op = wait_operation(client, op_id)
                assert op["kind"] == "update", op
                assert op["status"] == "succeeded", op["error"]
                view = _until(lambda: (v := _view(client, cid))["members"][0]["storage"][
                    "total_bytes"] > 1.5 * GIB and v)
                assert view["storage_gb"] == 2 and view["status"] == "ACTIVE", view
                assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() == started
                grown = [m for _, m in _events(client, cid, "node.storage_grown")]
                assert grown == ["node 0: storage grown to 2 GB (online: the server kept "
                                 "running)"], grown

                _fill_to(filler, root, 86)
                limit = _until(lambda: [e for e in _events(client, cid)
                                        if e[0] == "storage.autoscale_limit"])
                assert "at storage_autoscale.max_gb (2 GB): it cannot grow further" in (
                    limit[0][1]), limit
                # Said once: passes keep seeing the same use (four at least in 2 s).
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    assert [k for k, _ in _events(client, cid)] == [
                        "storage.autoscaled", "storage.autoscale_limit"]
                    time.sleep(0.25)
                assert _view(client, cid)["storage_gb"] == 2
                assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() == started

            # From the CLI: a higher max past today's use (nothing starts), then off.
            changed = _cli(hoard, token, "autoscale", "autoscaled", "--max-gb", "3",
                           "--threshold", "90")
            assert changed["storage_autoscale"] == {"max_gb": 3, "threshold_percent": 90}
            assert _cli(hoard, token, "autoscale", "autoscaled", "--off")[
                "storage_autoscale"] is None
            assert _view(client, cid)["storage_gb"] == 2
        finally:
            if os.path.exists(filler):
                os.unlink(filler)
            delete_cluster(client, cid)
