"""A PostgreSQL cluster end to end through the API, against real servers."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    tenant_uri,
    wait_operation,
)


def node_pid(server: HoardServer, node_id: str) -> int:
    import json

    record = json.loads((server.state_dir / "private" / "nodes" / node_id / "process.json"
                         ).read_text())
    return int(record["pid"])


def wait_status(client: httpx.Client, cluster_id: str, want: set[str], timeout: float = 30
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster = client.get(f"/v2/clusters/{cluster_id}").json()
        if cluster["status"] in want:
            return dict(cluster)
        time.sleep(0.1)
    raise TimeoutError(f"cluster {cluster_id} never reached {want}")


def connect(client: httpx.Client, cluster_id: str) -> psycopg.Connection:
    return psycopg.connect(tenant_uri(client, cluster_id), connect_timeout=5)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """No process listens on the port (connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def filesystem_gb(server: HoardServer, node_id: str) -> float:
    """Size of the filesystem holding a node's data."""
    st = os.statvfs(server.state_dir / "nodes" / node_id)
    return st.f_blocks * st.f_frsize / 1024**3


def assert_no_debris(server: HoardServer, node_ids: list[str],
                     addresses: list[tuple[str, int]]) -> None:
    mounts = Path("/proc/mounts").read_text()
    for node_id in node_ids:
        assert not (server.state_dir / "nodes" / node_id).exists()
        assert not (server.state_dir / "volumes" / f"{node_id}.img").exists()
        assert node_id not in mounts
        assert not Path(f"/sys/fs/cgroup/memory/hoard/{node_id}").exists()
    for host, port in addresses:
        assert port_is_free(port, host), f"{host}:{port} still in use"


def test_create_connect_delete(admin: httpx.Client, hoard: HoardServer) -> None:
    cluster = create_cluster(admin, "lifecycle", size="small")
    node = cluster["members"][0]
    try:
        assert cluster["status"] == "ACTIVE"
        assert node["status"] == "HEALTHY" and node["role"] == "primary"
        # The cluster's own address, where PostgreSQL's standard port answers.
        assert cluster["endpoints"] == [{"role": "read-write", "host": node["host"],
                                         "port": 5432}]
        assert ipaddress.ip_address(node["host"]) in ipaddress.ip_network("127.64.0.0/10")
        assert set(node["limits"]) == {"cpu", "memory", "storage"}
        if "enforced (" in node["limits"]["storage"]:  # a filesystem of the asked size
            assert 9 < filesystem_gb(hoard, node["id"]) <= 10
        with connect(admin, cluster["id"]) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t VALUES (1, 'hello')")
            conn.commit()
            assert conn.execute("SELECT v FROM t").fetchone() == ("hello",)
            assert conn.execute("SHOW shared_buffers").fetchone() == ("256MB",)
        # The server runs as the unprivileged database user, inside its cgroups.
        pid = node_pid(hoard, node["id"])
        status = Path(f"/proc/{pid}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        assert uid != 0
        if "enforced" in node["limits"]["memory"] and "not" not in node["limits"]["memory"]:
            assert f"/hoard/{node['id']}" in Path(f"/proc/{pid}/cgroup").read_text()
    finally:
        delete_cluster(admin, cluster["id"])
    assert admin.get(f"/v2/clusters/{cluster['id']}").status_code == 404
    assert_no_debris(hoard, [node["id"]], [(node["host"], node["port"])])


def test_observer_restarts_a_crashed_server(admin: httpx.Client, hoard: HoardServer) -> None:
    cluster = create_cluster(admin, "crashy")
    node = cluster["members"][0]
    try:
        old_pid = node_pid(hoard, node["id"])
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if node_pid(hoard, node["id"]) != old_pid:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        # Seen down and then healthy again: the status before the observer's
        # record of the restart would say nothing.
        deadline = time.monotonic() + 30
        while "node.recovered" not in [e["kind"] for e in admin.get(
                f"/v2/clusters/{cluster['id']}/events").json()["events"]]:
            assert time.monotonic() < deadline, "no node.recovered event after the kill"
            time.sleep(0.1)
        wait_status(admin, cluster["id"], {"ACTIVE"})
        with connect(admin, cluster["id"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert node_pid(hoard, node["id"]) != old_pid
    finally:
        delete_cluster(admin, cluster["id"])


def test_servers_outlive_hoard_and_are_readopted() -> None:
    with hoard_server() as server, server.client() as client:
        cluster = create_cluster(client, "durable")
        node_id = cluster["members"][0]["id"]
        pid = node_pid(server, node_id)
        server.stop()
        assert Path(f"/proc/{pid}").exists(), "the server died with Hoard"
        server.start()
        wait_status(client, cluster["id"], {"ACTIVE"})
        time.sleep(1.5)  # a few observer passes
        assert node_pid(server, node_id) == pid, "the server was restarted, not re-adopted"
        assert client.get(f"/v2/clusters/{cluster['id']}").json()["status"] == "ACTIVE"
        delete_cluster(client, cluster["id"])


@pytest.mark.parametrize("step", ["place nodes", "bootstrap", "start", "create admin account",
                                  "activate"])
def test_failed_create_leaves_nothing_behind(step: str) -> None:
    with hoard_server({"HOARD_FAIL_STEP": step}) as server, server.client() as client:
        response = client.post("/v2/clusters", json={
            "name": "doomed", "engine": "postgresql", "size": "nano"})
        assert response.status_code == 202
        accepted = response.json()
        op = wait_operation(client, accepted["operation"]["id"])
        assert op["status"] == "failed"
        assert "injected failure" in op["error"]
        assert [s["name"] for s in op["steps"] if s["status"] == "failed"] == [step], op
        cluster = client.get(f"/v2/clusters/{accepted['cluster']['id']}").json()
        assert cluster["status"] == "FAILED"
        assert "injected failure" in cluster["status_reason"]
        node_id = cluster["members"][0]["id"]
        assert not (server.state_dir / "nodes" / node_id).exists()
        # A FAILED cluster can be deleted, freeing its name.
        delete_cluster(client, cluster["id"])
        assert client.get(f"/v2/clusters/{cluster['id']}").status_code == 404


def test_observer_walks_clusters_in_batches() -> None:
    """With one cluster per batch, one pass still reaches every cluster: a crashed
    server in each of three clusters is restarted."""
    env = {"HOARD_OBSERVE_BATCH": "1", "HOARD_OBSERVE_INTERVAL": "0.5"}
    with hoard_server(env) as server, server.client() as client:
        clusters = [create_cluster(client, f"batch{i}", engine="redis") for i in range(3)]
        nodes = [c["members"][0]["id"] for c in clusters]
        old = {node: node_pid(server, node) for node in nodes}
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if all(node_pid(server, node) != old[node] for node in nodes):
                    break
            time.sleep(0.1)
        for cluster in clusters:
            wait_status(client, cluster["id"], {"ACTIVE"})
        assert all(node_pid(server, node) != old[node] for node in nodes)
