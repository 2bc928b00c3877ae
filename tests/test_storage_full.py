"""Storage use is observed and shown per node, and a full storage is reported as
such ("storage full (N of M bytes used): resize the storage"), not by whatever
the engine happens to fail with."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import PurePosixPath
from typing import Any

import httpx
import psycopg
import pytest

from hoard.domain.storage import GIB, MIB, StorageUsage
from hoard.providers.local import LocalProvider
from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    make_state_dir,
    new_tenant,
    tenant_uri,
    wait_operation,
)

FULL = re.compile(r"storage full \((\d+) of (\d+) bytes used\): resize the storage")


def test_when_storage_counts_as_full() -> None:
    assert not StorageUsage(900 * MIB, GIB).full
    assert StorageUsage(GIB - 4096, GIB).full
    assert StorageUsage(GIB - 31 * MIB, GIB).full
    assert StorageUsage(GIB - 90 * MIB, GIB).full  # where PostgreSQL refused every insert
    assert not StorageUsage(100 * GIB, 200 * GIB).full
    assert StorageUsage(199 * GIB + 200 * MIB, 200 * GIB).full  # under 1 GiB left
    assert StorageUsage(2 * GIB, GIB).free_bytes == 0  # a directory over its quota
    assert StorageUsage(10, GIB).describe() == (
        f"storage full (10 of {GIB} bytes used): resize the storage")


def test_a_plain_directory_node_is_measured_against_its_storage() -> None:
    root = make_state_dir()
    provider = LocalProvider(root / "nodes", "hoard-db", volumes="directory")
    try:
        provider.place("node-du", set(), 1)
        provider.runner("node-du").write_file(PurePosixPath("data/blob"), b"x" * (3 * MIB))
        usage = provider.storage_usage("node-du", 1)
        assert usage is not None and usage.total_bytes == GIB
        assert 3 * MIB <= usage.used_bytes < 4 * MIB and not usage.full
        assert provider.storage_usage("node-missing", 1) is None
    finally:
        provider.destroy("node-du")
        shutil.rmtree(root, ignore_errors=True)


def _member(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v2/clusters/{cluster_id}").json()["members"][0])


def _until(client: httpx.Client, cluster_id: str, check: Any, timeout: float = 60
           ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        member = _member(client, cluster_id)
        if check(member):
            return member
        assert time.monotonic() < deadline, json.dumps(member)
        time.sleep(0.2)


def _fill(uri: str) -> None:
    """Insert as the tenant until the disk stays full. A failed statement's WAL
    is recycled at the next checkpoint, which frees space again (a server that
    did that is rightly healthy): so after each failure, wait and go on in small
    steps until the committed rows themselves leave no room, or the server stops
    (a WAL write it cannot make)."""
    conn = psycopg.connect(uri, connect_timeout=10, autocommit=True)
    try:
        conn.execute("CREATE TABLE filler (x text)")
        rows, failures = 20000, 0
        while failures < 10:
            try:
                conn.execute("INSERT INTO filler SELECT repeat(md5(g::text), 30) "
                             "FROM generate_series(1, %s) g", (rows,))
                failures = 0
            except psycopg.errors.DiskFull:
                rows, failures = 500, failures + 1
                time.sleep(0.5)
            except psycopg.OperationalError:
                return  # the server stopped: out of space for its WAL
    finally:
        conn.close()


def test_a_full_storage_says_so_and_a_resize_clears_it(admin: httpx.Client,
                                                        hoard: HoardServer) -> None:
    with hoard.client(new_tenant(admin, f"filler-{time.monotonic_ns()}")) as client:
        cluster = create_cluster(client, "filled", storage_gb=1)
        try:
            if "enforced (" not in cluster["members"][0]["limits"]["storage"]:
                pytest.skip("storage is not a filesystem of its own here: nothing fills up")
            member = _until(client, cluster["id"], lambda m: m["storage"] is not None)
            total = member["storage"]["total_bytes"]
            assert 0.9 * GIB < total <= GIB and member["storage"]["used_bytes"] < total / 4
            _fill(tenant_uri(client, cluster["id"]))
            member = _until(client, cluster["id"], lambda m: m["status_reason"].startswith(
                "storage full"))
            found = FULL.fullmatch(member["status_reason"])
            # Full as StorageUsage defines it: less than 32 MiB (or 2%) left.
            assert found and int(found[2]) == total, member
            assert StorageUsage(int(found[1]), total).full, member
            assert member["status"] == "UNHEALTHY"
            assert StorageUsage(member["storage"]["used_bytes"], total).full, member
            view = client.get(f"/v2/clusters/{cluster['id']}").json()
            assert view["status"] == "DEGRADED" and "storage full" in view["status_reason"]
            events = client.get(f"/v2/clusters/{cluster['id']}/events").json()["events"]
            assert any(e["kind"] == "node.down" and "storage full" in e["message"]
                       for e in events), events
            response = client.patch(f"/v2/clusters/{cluster['id']}", json={"storage_gb": 2})
            assert response.status_code == 202, response.text
            op = wait_operation(client, response.json()["operation"]["id"], timeout=300)
            assert op["status"] == "succeeded", op["error"]
            member = _until(client, cluster["id"], lambda m: m["status"] == "HEALTHY"
                            and m["storage"]["total_bytes"] > 1.5 * GIB)
            assert member["status_reason"] == ""
            # Grown with the server up where the volume grows mounted; either way said.
            events = client.get(f"/v2/clusters/{cluster['id']}/events").json()["events"]
            grown = [e["message"] for e in events if e["kind"] == "node.storage_grown"]
            assert len(grown) == 1 and grown[0].startswith(
                "node 0: storage grown to 2 GB ("), grown
            assert client.get(f"/v2/clusters/{cluster['id']}").json()["status"] == "ACTIVE"
        finally:
            delete_cluster(client, cluster["id"])
