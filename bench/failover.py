"""Failover time: from kill -9 of a replicated cluster's primary node until writes
succeed again through the cluster's read-write endpoint.

One Hoard (three loopback hosts in three zones), one 3-node cluster per engine.
A writer keeps inserting one row (Redis: one key) per round trip through the
read-write endpoint, reconnecting after every error. Each trial kills every
process of the primary's node at once (a host failure), records the time from
the kill to the first acknowledged write after the first failed one, then
waits until the cluster is whole again (the observer restarted the node, it
rejoined) before the next trial. The observer restarts a killed node within
about a second, so a node may be back before its lock expired and simply carry
on as the primary (Patroni); ``--lose-host`` destroys the node with its storage
instead, so a replica must take over (and Hoard makes a new node).
Durability: sync for PostgreSQL and MariaDB (no acknowledged write may be
lost: the script checks), async for Redis.

Anchors: Patroni's defaults (ttl 30 s) fail over in about 30 s; RDS Multi-AZ
takes 60-120 s. Target: a median of at most 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx
from _common import Hoard, load_note, make_state_dir, teardown, tenant_uri, wait_operation

from hoard.providers.local import LocalProvider
from tests.ha_load import Writer, present

DURABILITY = {"postgresql": "sync", "mariadb": "sync", "redis": "async"}
HOSTS = "127.0.0.1@zone-a,127.0.0.2@zone-b,127.0.0.3@zone-c"
OBSERVE_INTERVAL = 1.0


def _show(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v2/clusters/{cluster_id}").json())


def _wait_whole(client: httpx.Client, cluster_id: str, nodes: int, multi_primary: bool,
                timeout: float = 180) -> dict[str, Any]:
    """Until every node is healthy and the roles are settled (one primary; every
    node for Galera, where all take writes)."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = _show(client, cluster_id)
        members = cluster["members"]
        primaries = sum(m["role"] == "primary" for m in members)
        if (cluster["status"] == "ACTIVE" and len(members) == nodes
                and all(m["status"] == "HEALTHY" for m in members)
                and (primaries == 1 or (multi_primary and primaries == nodes))):
            # Roles are what the observer last recorded: let two more passes confirm.
            time.sleep(2 * OBSERVE_INTERVAL)
            again = _show(client, cluster_id)
            if [m["role"] for m in again["members"]] == [m["role"] for m in members]:
                return again
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster not whole again: {cluster['status_reason']}")
        time.sleep(0.2)


def run_engine(hoard: Hoard, engine: str, trials: int, lose: bool) -> dict[str, Any]:
    provider = LocalProvider(hoard.state_dir / "nodes", "hoard-db")
    with hoard.client() as client:
        answer = client.post("/v2/clusters", json={
            "name": f"failover-{engine}", "engine": engine, "size": "small", "nodes": 3,
            "durability": DURABILITY[engine]})
        answer.raise_for_status()
        cluster_id = answer.json()["cluster"]["id"]
        wait_operation(client, answer.json()["operation"]["id"])
        cluster = _wait_whole(client, cluster_id, 3, engine == "mariadb")
        uri = tenant_uri(client, cluster_id)
        times: list[float] = []
        with Writer(engine, uri) as writer:
            for trial in range(trials):
                writer.wait_writes(50)
                # The primary; with Galera (every node takes writes) the writer's node.
                primary = next(m for m in cluster["members"] if m["role"] == "primary")
                if engine == "mariadb":
                    primary = next((m for m in cluster["members"]
                                    if m["port"] == writer.server_port), primary)
                killed = time.monotonic()
                if lose:
                    provider.destroy(primary["id"])  # the host and its disk are gone
                else:
                    provider.kill(primary["id"])
                times.append(writer.recovered_after(killed, timeout=120))
                cluster = _wait_whole(client, cluster_id, 3, engine == "mariadb")
                after = next(m for m in cluster["members"] if m["role"] == "primary")
                print(f"  {engine} trial {trial + 1}: node {primary['ordinal']} "
                      f"{'lost' if lose else 'killed'}, writes back after {times[-1]:.2f} s; "
                      f"primary now node {after['ordinal']}", flush=True)
            writer.wait_writes(50)
        lost = set(writer.acked) - present(engine, uri)
        answer = client.delete(f"/v2/clusters/{cluster_id}")
        wait_operation(client, answer.json()["operation"]["id"])
    return {"engine": engine, "times": times, "median": statistics.median(times),
            "acked": len(writer.acked), "lost": len(lost)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="all",
                        choices=["all", "postgresql", "mariadb", "redis"])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--lose-host", action="store_true",
                        help="destroy the primary's node with its storage (no restart in "
                             "place: the HA machinery must promote a replica; Hoard then "
                             "replaces the node) instead of killing its processes")
    args = parser.parse_args()
    engines = ["postgresql", "mariadb", "redis"] if args.engine == "all" else [args.engine]
    print(load_note())
    state_dir = make_state_dir("hoard-bench-failover-")
    hoard = Hoard(state_dir, {"HOARD_LOCAL_HOSTS": HOSTS,
                              "HOARD_OBSERVE_INTERVAL": str(OBSERVE_INTERVAL)})
    results = []
    try:
        hoard.start()
        for engine in engines:
            results.append(run_engine(hoard, engine, args.trials, args.lose_host))
    finally:
        teardown(hoard, state_dir)
    print(load_note())
    print("\n| engine | durability | trials (s) | median | acknowledged writes | lost |")
    print("|---|---|---|---|---|---|")
    for r in results:
        trials = ", ".join(f"{t:.2f}" for t in r["times"])
        print(f"| {r['engine']} | {DURABILITY[r['engine']]} | {trials} | **{r['median']:.2f} s**"
              f" | {r['acked']} | {r['lost']} |")
    print("\nAnchors: Patroni defaults ~30 s; RDS Multi-AZ 60-120 s. Target <= 10 s.")


if __name__ == "__main__":
    main()
