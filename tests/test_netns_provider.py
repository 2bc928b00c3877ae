"""The netns provider: every node a host of its own (a network namespace with one
address on a private bridge), with real servers. It proves the provider seam with
nodes that are not on Hoard's host network: Hoard reaches them, and they reach
each other, only over that network."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    HoardServer,
    create_cluster,
    delete_cluster,
    hoard_server,
    tenant_uri,
    wait_operation,
)
from tests.engine_clients import write_read
from tests.test_crash_recovery import processes_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="network namespaces need root and iproute2")
NETWORK = IPv4Network(f"10.{secrets.randbelow(200) + 20}.0.0/16")


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def bridges_of(network: IPv4Network) -> list[str]:
    done = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                          check=True)
    return [line.split()[1] for line in done.stdout.splitlines()
            if f" {network.network_address + 1}/" in line]


@pytest.fixture(scope="module")
def server() -> Iterator[HoardServer]:
    try:
        with hoard_server({"HOARD_NETNS_NETWORK": str(NETWORK),
                           "HOARD_PROVIDER": "netns"}) as running:
            yield running
    finally:
        for bridge in bridges_of(NETWORK):
            subprocess.run(["ip", "link", "del", bridge], check=False)


@pytest.fixture(scope="module")
def client(server: HoardServer) -> Iterator[httpx.Client]:
    with server.client() as admin:
        yield admin


def net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def server_pid(server: HoardServer, node_id: str) -> int:
    """The node's server, as the provider recorded it (other processes under the
    node's directory come and go: tools Hoard runs there)."""
    record = server.state_dir / "private" / "nodes" / node_id / "process.json"
    return int(json.loads(record.read_text())["pid"])


def node_pids(server: HoardServer, node_id: str) -> list[int]:
    return processes_under(server.state_dir / "nodes" / node_id)


@pytest.mark.parametrize("engine", ["postgresql", "redis"])
def test_a_standalone_node_is_a_host_of_its_own(server: HoardServer, client: httpx.Client,
                                                 engine: str) -> None:
    made = create_cluster(client, f"apart-{engine}", engine=engine)
    try:
        node = made["members"][0]
        host = IPv4Address(node["host"])
        assert made["provider"] == "netns" and node["provider"] == "netns"
        assert host in NETWORK and host >= NETWORK[NETWORK.num_addresses // 2], node
        creds = client.get(f"/v2/clusters/{made['id']}/credentials").json()
        assert (creds["host"], creds["port"]) == (node["host"], {"postgresql": 5432,
                                                                  "redis": 6379}[engine])
        assert write_read(engine, tenant_uri(client, made["id"])) == "ok"
        # Its server lives in its namespace, not in Hoard's.
        assert net_namespace(server_pid(server, node["id"])) != net_namespace(os.getpid())
        assert f"hoard-{node['id']}" in namespaces()
    finally:
        delete_cluster(client, made["id"])
    assert f"hoard-{node['id']}" not in namespaces()


def test_a_replicated_cluster_spans_hosts(server: HoardServer, client: httpx.Client) -> None:
    """Three Redis nodes on three hosts, meeting over the bridge; the endpoints (on
    the host) follow a switchover."""
    made = create_cluster(client, "spread", engine="redis", nodes=3)
    try:
        hosts = [IPv4Address(m["host"]) for m in made["members"]]
        assert len(set(hosts)) == 3 and all(h in NETWORK for h in hosts), hosts
        assert len({m["zone"] for m in made["members"]}) == 3
        uri = tenant_uri(client, made["id"])
        assert write_read("redis", uri) == "ok"
        replica = next(m for m in made["members"] if m["role"] == "replica")
        answer = client.post(f"/v2/clusters/{made['id']}/switchover",
                             json={"node_id": replica["id"]})
        assert answer.status_code == 202, answer.text
        op = wait_operation(client, answer.json()["operation"]["id"])
        assert op["status"] == "succeeded", op["error"]
        assert write_read("redis", uri) == "ok"
        nodes = [m["id"] for m in made["members"]]
    finally:
        delete_cluster(client, made["id"])
    assert not {f"hoard-{n}" for n in nodes} & namespaces()
    assert not any(node_pids(server, n) for n in nodes)


def test_patroni_reaches_its_etcd_over_the_bridge(client: httpx.Client) -> None:
    """PostgreSQL's failover machinery runs in the nodes' namespaces and reaches the
    etcd Hoard runs on the host, at the bridge's address."""
    made = create_cluster(client, "patroni-apart", engine="postgresql", nodes=2)
    try:
        assert sorted(m["role"] for m in made["members"]) == ["primary", "replica"]
        assert write_read("postgresql", tenant_uri(client, made["id"])) == "ok"
    finally:
        delete_cluster(client, made["id"])


def test_unconfigured_it_is_not_offered(client: httpx.Client) -> None:
    """A Hoard without HOARD_NETNS_NETWORK offers only the local provider; this one
    refuses an unknown provider by name."""
    answer = client.post("/v2/clusters", json={"name": "nowhere", "engine": "redis",
                                               "size": "nano", "provider": "cloud"})
    assert answer.status_code == 422 and "available: local, netns" in answer.text


def test_bridge_is_the_only_trace_left(server: HoardServer) -> None:
    assert not [n for n in namespaces() if n.startswith("hoard-")
                and (server.state_dir / "nodes" / n.removeprefix("hoard-")).exists()]
    assert Path(f"/sys/class/net/{bridges_of(NETWORK)[0]}").exists()
