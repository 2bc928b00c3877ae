"""Replicated clusters through the API, for every engine that has them: create
with 3 nodes, keep writing through the read-write endpoint while the primary's
node is killed (kill -9 of every process on it), and see the cluster fail over,
show it (DEGRADED, events), lose no acknowledged write where durability is
sync, and come back to full strength on its own; then switch over, grow,
shrink and promote a replica out into its own cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from hoard.engines.base import Replication
from hoard.engines.registry import ENGINES
from hoard.providers.local import LocalProvider
from tests.conftest import (
    HoardServer,
    create_cluster,
    hoard_server,
    new_tenant,
    tenant_uri,
    wait_operation,
)
from tests.ha_load import Writer, present
from tests.test_addresses import answers_at_its_address

HA_ENGINES = [name for name, e in ENGINES.items() if isinstance(e, Replication)]
DURABILITY = {"postgresql": "sync", "mariadb": "sync", "redis": "async"}
FAILOVER_LIMIT = 30.0  # generous for a shared test machine; bench/failover.py measures


@pytest.fixture(scope="module")
def ha_hoard() -> Iterator[HoardServer]:
    # Three loopback addresses in three zones: the nodes of a cluster are spread.
    with hoard_server({"HOARD_LOCAL_HOSTS": "127.0.0.1@zone-a,127.0.0.2@zone-b,"
                                            "127.0.0.3@zone-c"}) as server:
        yield server


def _show(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    answer = client.get(f"/v2/clusters/{cluster_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _wait_cluster(client: httpx.Client, cluster_id: str, what: str, predicate: Any,
                  timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        cluster = _show(client, cluster_id)
        if predicate(cluster):
            return cluster
        assert time.monotonic() < deadline, f"{what} not reached: {cluster}"
        time.sleep(0.2)


def _whole(nodes: int) -> Any:
    def check(c: dict[str, Any]) -> bool:
        members = c["members"]
        return (c["status"] == "ACTIVE" and len(members) == nodes
                and all(m["status"] == "HEALTHY" for m in members)
                and sum(m["role"] == "primary" for m in members) >= 1)
    return check


def _create_watching(client: httpx.Client, name: str, **fields: Any
                     ) -> tuple[dict[str, Any], set[str]]:
    """Create a cluster and follow its operation to the end: the cluster, and every
    step detail seen while it ran."""
    answer = client.post("/v2/clusters", json={"name": name, **fields})
    assert answer.status_code == 202, answer.text
    op_id, seen = answer.json()["operation"]["id"], set()
    deadline = time.monotonic() + 180
    while True:
        op = client.get(f"/v2/operations/{op_id}").json()
        seen |= {s["detail"] for s in op["steps"] if s.get("detail")}
        if op["status"] != "running":
            break
        assert time.monotonic() < deadline, op
        time.sleep(0.1)
    assert op["status"] == "succeeded", (op["error"], op["steps"])
    assert not any(s.get("detail", "").startswith("waiting: ") for s in op["steps"]), op
    return _show(client, answer.json()["cluster"]["id"]), seen


def _primary(cluster: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in cluster["members"] if m["role"] == "primary")


def _uri(client: httpx.Client, cluster_id: str) -> str:
    return tenant_uri(client, cluster_id)


def _events(client: httpx.Client, cluster_id: str) -> list[str]:
    return [e["kind"] for e in client.get(f"/v2/clusters/{cluster_id}/events").json()["events"]]


@pytest.mark.parametrize("engine", HA_ENGINES)
def test_failover_under_write_load(ha_hoard: HoardServer, engine: str) -> None:
    with ha_hoard.client() as admin:
        token = new_tenant(admin, f"ha-{engine}")
    provider = LocalProvider(ha_hoard.state_dir / "nodes", "hoard-db")
    with ha_hoard.client(token) as client:
        cluster, waited = _create_watching(client, "ha", engine=engine, size="nano", nodes=3,
                                           durability=DURABILITY[engine])
        # While a step waits, the operation says for what; once done, that is gone.
        assert any(d.startswith("waiting: ") for d in waited), waited
        cluster = _wait_cluster(client, cluster["id"], "whole", _whole(3))
        assert cluster["durability"] == DURABILITY[engine]
        # Spread over the three zones; the API says where each node is.
        assert sorted(m["zone"] for m in cluster["members"]) == ["zone-a", "zone-b", "zone-c"]
        roles = {e["role"]: e for e in cluster["endpoints"]}
        assert set(roles) == {"read-write", "read-only"}
        # Each endpoint an address of its own, on the standard port.
        assert roles["read-write"]["host"] != roles["read-only"]["host"]
        answers_at_its_address(client, cluster)
        uri = _uri(client, cluster["id"])
        assert f"@{roles['read-write']['host']}:{roles['read-write']['port']}" in uri

        with Writer(engine, uri) as writer:
            writer.wait_writes(20)
            victim = _primary(cluster)
            killed_at = time.monotonic()
            provider.kill(victim["id"])
            downtime = writer.recovered_after(killed_at, timeout=FAILOVER_LIMIT)
            writer.wait_writes(20)
        print(f"{engine}: writes came back {downtime:.2f}s after kill -9 of the primary")

        # Seen and said: the observer records the node as down, then back.
        deadline = time.monotonic() + 60
        while "node.down" not in _events(client, cluster["id"]):
            assert time.monotonic() < deadline, "no node.down event after the kill"
            time.sleep(0.2)
        # Back to full strength on its own: the killed node restarted and rejoined.
        cluster = _wait_cluster(client, cluster["id"], "whole again", _whole(3))
        kinds = _events(client, cluster["id"])
        assert "node.down" in kinds and "node.recovered" in kinds, kinds
        if engine != "mariadb":  # Galera has no single primary to move
            assert "cluster.primary_changed" in kinds or _primary(cluster)["id"] == victim["id"]
        stored = present(engine, uri)
        lost = set(writer.acked) - stored
        if DURABILITY[engine] == "sync":
            assert not lost, f"{len(lost)} acknowledged writes lost: {sorted(lost)[:10]}"
        print(f"{engine}: {len(writer.acked)} writes acknowledged, {len(lost)} lost")

        # A replica whose storage is gone altogether is made again from the cluster.
        replica = next(m for m in cluster["members"] if m["role"] != "primary"
                       ) if engine != "mariadb" else cluster["members"][-1]
        provider.destroy(replica["id"])
        cluster = _wait_cluster(
            client, cluster["id"], "replaced",
            lambda c: _whole(3)(c) and replica["id"] not in {m["id"] for m in c["members"]},
            timeout=180)
        assert "node.replacing" in _events(client, cluster["id"])
        assert present(engine, uri) >= stored
        # Failover and a replaced node moved no endpoint.
        assert {e["role"]: e for e in cluster["endpoints"]} == roles
        wait_operation(client, client.delete(f"/v2/clusters/{cluster['id']}").json()
                       ["operation"]["id"])


@pytest.mark.parametrize("engine", HA_ENGINES)
def test_switchover_scale_and_promote(ha_hoard: HoardServer, engine: str) -> None:
    with ha_hoard.client() as admin:
        token = new_tenant(admin, f"ha-ops-{engine}")
    with ha_hoard.client(token) as client:
        cluster = create_cluster(client, "ops", engine=engine, size="nano", nodes=2)
        cid = cluster["id"]
        cluster = _wait_cluster(client, cid, "whole", _whole(2))
        uri = _uri(client, cid)
        with Writer(engine, uri) as writer:
            writer.wait_writes(10)

        if engine != "mariadb":  # every Galera node takes writes already
            replica = next(m for m in cluster["members"] if m["role"] != "primary")
            op = client.post(f"/v2/clusters/{cid}/switchover", json={"node_id": replica["id"]})
            assert op.status_code == 202, op.text
            wait_operation(client, op.json()["operation"]["id"])
            assert _primary(_show(client, cid))["id"] == replica["id"]
            again = client.post(f"/v2/clusters/{cid}/switchover",
                                json={"node_id": replica["id"]})
            assert again.status_code == 422 and "already the primary" in again.text

        # Backups come from whichever node is primary now; a restore has the data.
        made = client.post(f"/v2/clusters/{cid}/backups")
        assert made.status_code == 202, made.text
        assert wait_operation(client, made.json()["operation"]["id"])["status"] == "succeeded"
        if engine == "postgresql":
            copy = create_cluster(client, "copy", engine=engine, size="nano",
                                  restore={"backup_id": made.json()["backup"]["id"]})
            assert present(engine, _uri(client, copy["id"])) >= set(writer.acked)
            wait_operation(client, client.delete(f"/v2/clusters/{copy['id']}").json()
                           ["operation"]["id"])

        # Durability changes on the running cluster, where the engine can keep it.
        changed = client.patch(f"/v2/clusters/{cid}", json={"durability": "sync"})
        if engine == "postgresql":
            assert changed.status_code == 202, changed.text
            wait_operation(client, changed.json()["operation"]["id"])
            assert _show(client, cid)["durability"] == "sync"
            deadline = time.monotonic() + 30  # Patroni names one within a loop or two
            while True:
                with psycopg.connect(uri, connect_timeout=10) as conn:
                    row = conn.execute("SHOW synchronous_standby_names").fetchone()
                if row and row[0]:
                    break
                assert time.monotonic() < deadline, "no synchronous standby named"
                time.sleep(0.5)
        elif engine == "redis":
            assert changed.status_code == 422 and "async" in changed.text

        op = client.patch(f"/v2/clusters/{cid}", json={"nodes": 3})
        assert op.status_code == 202, op.text
        wait_operation(client, op.json()["operation"]["id"], timeout=180)
        cluster = _wait_cluster(client, cid, "grown", _whole(3))
        assert present(engine, uri) >= set(writer.acked), "a joined node lost data"

        op = client.patch(f"/v2/clusters/{cid}", json={"nodes": 2})
        wait_operation(client, op.json()["operation"]["id"])
        cluster = _wait_cluster(client, cid, "shrunk", _whole(2))
        assert cluster["nodes"] == 2

        # Promote a replica out: a standalone cluster with the data, writable.
        leaving = next(m for m in cluster["members"] if m["role"] != "primary"
                       ) if engine != "mariadb" else cluster["members"][-1]
        op = client.post(f"/v2/clusters/{cid}/nodes/{leaving['id']}/promote",
                         json={"name": "promoted"})
        assert op.status_code == 202, op.text
        wait_operation(client, op.json()["operation"]["id"], timeout=180)
        clusters = {c["name"]: c for c in client.get("/v2/clusters").json()["clusters"]}
        promoted = clusters["promoted"]
        assert promoted["status"] == "ACTIVE" and promoted["nodes"] == 1
        assert promoted["members"][0]["id"] == leaving["id"]
        promoted_uri = _uri(client, promoted["id"])
        assert present(engine, promoted_uri) >= set(writer.acked)
        with Writer(engine, promoted_uri) as more:
            more.wait_writes(5)
        source = _wait_cluster(client, cid, "one node less", _whole(1))
        assert source["nodes"] == 1

        bad = client.post(f"/v2/clusters/{cid}/switchover", json={"node_id": "nope"})
        assert bad.status_code == 422
        for c in (cid, promoted["id"]):
            wait_operation(client, client.delete(f"/v2/clusters/{c}").json()["operation"]["id"])


def test_replication_requests_are_validated(ha_hoard: HoardServer) -> None:
    with ha_hoard.client() as admin:
        token = new_tenant(admin, "ha-validation")
    with ha_hoard.client(token) as client:
        for body, words in [
            ({"nodes": 6}, "nodes"),
            ({"nodes": 3, "durability": "sometimes"}, "durability"),
            ({"nodes": 1, "durability": "sync"}, "2 or more nodes"),
        ]:
            answer = client.post("/v2/clusters", json={"name": "x", "engine": "postgresql",
                                                       "size": "nano", **body})
            assert answer.status_code == 422 and words in answer.text, answer.text
        if "redis" in HA_ENGINES:
            answer = client.post("/v2/clusters", json={"name": "x", "engine": "redis",
                                                       "size": "nano", "nodes": 3,
                                                       "durability": "sync"})
            assert answer.status_code == 422 and "async" in answer.text, answer.text
        assert client.get("/v2/clusters").json()["clusters"] == []
        single = create_cluster(client, "single", engine="redis", size="nano")
        grow = client.patch(f"/v2/clusters/{single['id']}", json={"nodes": 3})
        assert grow.status_code == 422 and "standalone" in grow.text
        mixed = client.patch(f"/v2/clusters/{single['id']}", json={"nodes": 3, "size": "small"})
        assert mixed.status_code == 422 and "on its own" in mixed.text
        wait_operation(client, client.delete(f"/v2/clusters/{single['id']}").json()
                       ["operation"]["id"])
