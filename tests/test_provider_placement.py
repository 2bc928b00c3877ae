"""A cluster stays on its provider for life, and a restore may put its copy on
another one. Two real providers: local (the default here) and netns (each
node a host of its own on a private network), with real Redis servers."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import httpx
import pytest

from tests.conftest import (
    create_cluster,
    delete_cluster,
    hoard_server,
    tenant_uri,
    wait_operation,
)
from tests.engine_clients import keys, write_read
from tests.test_netns_provider import bridges_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="network namespaces need root and iproute2")
NETWORK = IPv4Network(f"10.{secrets.randbelow(200) + 20}.0.0/16")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    try:
        with hoard_server({"HOARD_NETNS_NETWORK": str(NETWORK)}) as server, \
                server.client() as admin:
            yield admin
    finally:
        for bridge in bridges_of(NETWORK):
            subprocess.run(["ip", "link", "del", bridge], check=False)


def on_netns(cluster: dict[str, Any]) -> bool:
    """The cluster and every node on the netns provider, each node a host there."""
    return cluster["provider"] == "netns" and all(
        m["provider"] == "netns" and IPv4Address(m["host"]) in NETWORK
        for m in cluster["members"])


def test_a_scale_adds_nodes_on_the_clusters_provider(client: httpx.Client) -> None:
    """Not on the default provider (local here): on the one the cluster was made on."""
    made = create_cluster(client, "grows", engine="redis", nodes=2, provider="netns")
    try:
        assert on_netns(made), made
        answer = client.patch(f"/v2/clusters/{made['id']}", json={"nodes": 3})
        assert answer.status_code == 202, answer.text
        op = wait_operation(client, answer.json()["operation"]["id"], timeout=300)
        assert op["status"] == "succeeded", (op["error"], op["steps"])
        grown = client.get(f"/v2/clusters/{made['id']}").json()
        assert len(grown["members"]) == 3 and on_netns(grown), grown
        assert len({m["host"] for m in grown["members"]}) == 3
        assert write_read("redis", tenant_uri(client, made["id"])) == "ok"
        refused = client.patch(f"/v2/clusters/{made['id']}", json={"provider": "local"})
        assert refused.status_code == 422, refused.text
        assert client.get(f"/v2/clusters/{made['id']}").json()["provider"] == "netns"
    finally:
        delete_cluster(client, made["id"])


def test_a_restore_may_put_the_copy_on_another_provider(client: httpx.Client) -> None:
    source = create_cluster(client, "here", engine="redis")
    try:
        assert source["provider"] == "local"
        assert write_read("redis", tenant_uri(client, source["id"]), key="moved") == "ok"
        taken = client.post(f"/v2/clusters/{source['id']}/backups")
        assert taken.status_code == 202, taken.text
        op = wait_operation(client, taken.json()["operation"]["id"])
        assert op["status"] == "succeeded", op["error"]
        copy = create_cluster(client, "there", engine="redis", provider="netns",
                              restore={"backup_id": taken.json()["backup"]["id"]})
        try:
            assert on_netns(copy), copy
            assert keys("redis", tenant_uri(client, copy["id"])) == {"moved"}
        finally:
            delete_cluster(client, copy["id"])
        # The source stays where it was made.
        assert client.get(f"/v2/clusters/{source['id']}").json()["provider"] == "local"
    finally:
        delete_cluster(client, source["id"])
