"""Hoard's workflows on the Kubernetes provider with the members running:
kmock's emulator as the API server, and a stand-in for the kubelet and the
StatefulSet controller (tests/kubelet.py, named as such: no Kubernetes can
run here) that runs each pod the provider declares as local processes in a
sandbox of its own (a network namespace with the pod's IP, its claim at the
volume's mount path), answers the Services' names and forwards their
addresses, and runs exec in the pod (tests/kube_exec.py). Hoard itself is a
real process (the API and its workers) whose ``/etc/hosts`` is the stand-in's,
as a pod of Hoard's would resolve names by the cluster's DNS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from hoard.providers.kubernetes.provider import KubernetesProvider
from tests.conftest import (
    create_cluster,
    delete_cluster,
    hoard_server,
    make_state_dir,
    new_tenant,
    remove_state_dir,
    tenant_uri,
)
from tests.ha_load import _Session, present
from tests.kube_exec import StandInExec
from tests.kube_sandbox import Network, private_dir
from tests.kube_support import NAMESPACE, MockApi, kubeconfig_for, mock_api, provider_for
from tests.kubelet import Kubelet

PATRONI_IN_IMAGE = "/opt/hoard/patroni-4.1.5/bin/patroni"


@dataclass
class World:
    api: MockApi
    kubelet: Kubelet
    provider: KubernetesProvider
    tenant: httpx.Client


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = make_state_dir()
    network = Network.make(str(root))
    box: dict[str, object] = {}
    try:
        with private_dir(root / "kubelet") as kroot:
            standin = StandInExec(pods=lambda: box["api"].objects("pods"),  # type: ignore[attr-defined]
                                  enter=lambda pod: box["kubelet"].enter(pod))  # type: ignore[attr-defined]
            with mock_api(front=standin.front, host=network.gateway) as api:
                box["api"] = api
                kubeconfig = kubeconfig_for(api.url, root / "kubeconfig")
                kubelet = Kubelet(api, kroot, network, kubeconfig.read_text(),
                                  overlays=[(PATRONI_IN_IMAGE, "/usr/bin/patroni")])
                box["kubelet"] = kubelet
                try:
                    with hoard_server({"HOARD_KUBECONFIG": str(kubeconfig),
                                       "HOARD_KUBERNETES_NAMESPACE": NAMESPACE,
                                       "HOARD_PROVIDER": "kubernetes",
                                       "HOARD_KUBERNETES_START_DEADLINE": "60"},
                                      wrap=kubelet.wrap()) as server:
                        with server.client() as admin:
                            token = new_tenant(admin, "pods")
                        with server.client(token) as tenant:
                            yield World(api, kubelet, provider_for(kubeconfig), tenant)
                finally:
                    kubelet.stop()
                    assert not kubelet.errors, kubelet.errors[0]
    finally:
        network.remove()
        remove_state_dir(root)


def _uri(world: World, cluster_id: str) -> str:
    return world.kubelet.proxy.libpq_uri(tenant_uri(world.tenant, cluster_id))


def _sql(world: World, cluster_id: str, query: str) -> list[tuple]:
    """``query`` as the tenant runs it: the credentials' URI, over TLS verified
    against Hoard's CA for the address's name (the test's process does not use
    the stand-in's hosts file: libpq is given the name's address)."""
    with psycopg.connect(_uri(world, cluster_id), autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def _show(world: World, cluster_id: str) -> dict[str, Any]:
    answer = world.tenant.get(f"/v2/clusters/{cluster_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _wait(world: World, cluster_id: str, what: str, check: Any,
          timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        cluster = _show(world, cluster_id)
        if check(cluster):
            return cluster
        assert time.monotonic() < deadline, f"{what}: {cluster}"
        time.sleep(0.2)


def _whole(cluster: dict[str, Any]) -> bool:
    members = cluster["members"]
    return (cluster["status"] == "ACTIVE" and all(m["status"] == "HEALTHY" for m in members)
            and sum(m["role"] == "primary" for m in members) == 1)


def _role_labels(world: World, cluster: dict[str, Any]) -> dict[str, str | None]:
    pods = world.api.objects("pods")
    return {m["id"]: pods[names.pod(m["id"])]["metadata"]["labels"].get(names.ROLE)
            for m in cluster["members"] if names.pod(m["id"]) in pods}


def _nothing_left(world: World, cluster: dict[str, Any]) -> None:
    """Every kind the provider makes, listed by label, is gone, and so is every
    pod the stand-in ran."""
    deadline = time.monotonic() + 30
    while world.kubelet.running or world.api.objects("pods"):
        assert time.monotonic() < deadline, list(world.api.objects("pods"))
        time.sleep(0.1)
    for kind in KINDS:
        for labels in ({names.CLUSTER: cluster["id"]},
                       *({names.NODE: m["id"]} for m in cluster["members"])):
            assert world.provider.kube.names(kind, labels) == [], (kind, labels)


def test_a_standalone_postgresql_runs_in_its_pod(world: World) -> None:
    cluster = create_cluster(world.tenant, "solo", engine="postgresql", version="15")
    _sql(world, cluster["id"], "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 5)")
    assert _sql(world, cluster["id"], "SELECT v FROM t ORDER BY v") == [(i,) for i in range(1, 6)]
    (member,) = cluster["members"]
    pod = world.api.objects("pods")[names.pod(member["id"])]
    assert pod["metadata"]["labels"][names.ROLE] == "primary"
    assert pod["spec"]["containers"][0]["command"][0].endswith("/postgres")
    delete_cluster(world.tenant, cluster["id"])
    _nothing_left(world, cluster)


def _write(engine: str, uri: str, keys: range) -> None:
    with _Session(engine, uri) as session:
        session.setup()
        for key in keys:
            session.write(key)


def _written_until_accepted(engine: str, uri: str, key: int, within: float) -> float:
    """Write ``key`` through the cluster's read-write address, a new connection
    each try, until it is taken: the seconds that took."""
    started = time.monotonic()
    while True:
        try:
            _write(engine, uri, range(key, key + 1))
            return time.monotonic() - started
        except Exception as exc:
            assert time.monotonic() - started < within, f"no writes {within:.0f} s on: {exc}"
            time.sleep(0.5)


def _one_primary(engine: str) -> Any:
    def check(cluster: dict[str, Any]) -> bool:
        primaries = [m for m in cluster["members"] if m["role"] == "primary"]
        return (cluster["status"] == "ACTIVE" and len(cluster["members"]) == 3
                and all(m["status"] == "HEALTHY" for m in cluster["members"])
                and (len(primaries) == 1 or (engine == "mariadb" and len(primaries) == 3)))
    return check


@pytest.mark.parametrize("engine", ["postgresql", "redis", "mariadb"])
def test_a_replicated_cluster_forms_in_pods_fails_over_and_takes_its_member_back(
        world: World, engine: str) -> None:
    """A three-member cluster on the engine's own machinery (Patroni on its
    Kubernetes DCS, Sentinel, Galera), every member a pod; its primary's host is
    lost (the pod gone, not scheduled again until the host is back): another
    member takes writes at the same address, with every row written before,
    the read-write Service following the role labels; the host back, the lost
    member rejoins as a replica with every row."""
    whole = _one_primary(engine)
    cluster = create_cluster(world.tenant, "trio", engine=engine, nodes=3)
    cid = cluster["id"]
    cluster = _wait(world, cid, "whole", whole)
    primary = next(m["id"] for m in cluster["members"] if m["role"] == "primary")
    labels = _role_labels(world, cluster)
    if engine != "mariadb":  # the read-write Service selects the primary's pod alone
        assert labels == {m["id"]: "primary" if m["id"] == primary else "replica"
                          for m in cluster["members"]}
    for endpoint in cluster["endpoints"]:
        world.kubelet.proxy.wait_resolvable(endpoint["host"])
    uri = tenant_uri(world.tenant, cid)
    if engine == "postgresql":
        uri = world.kubelet.proxy.libpq_uri(uri)
    with world.kubelet.proxy.names():
        _write(engine, uri, range(1, 101))
        # Every replica has it all: asynchronous replication loses what a replica
        # has not received when its primary goes (within the machinery's limits).
        _wait(world, cid, "replicas caught up", lambda c: whole(c) and all(
            not m["lag_bytes"] for m in c["members"] if m["role"] == "replica"))
        # Its host lost: the pod gone, not scheduled again until the host is back
        # (a pod lost and made again at once keeps its role: no failover then).
        world.kubelet.lose(names.pod(primary))
        took = _written_until_accepted(engine, uri, 101, within=90)
        print(f"{engine}: the read-write address took writes {took:.1f}s after the "
              "primary's host was lost")
        assert present(engine, uri) == set(range(1, 102))
        if engine != "mariadb":
            cluster = _wait(world, cid, "failed over", lambda c: any(
                m["role"] == "primary" and m["status"] == "HEALTHY" and m["id"] != primary
                for m in c["members"]))
        pending = world.api.objects("pods")[names.pod(primary)]
        assert pending["status"]["phase"] == "Pending"  # what Hoard sees of a lost host
        world.kubelet.bring_back(names.pod(primary))
        cluster = _wait(world, cid, "whole again", whole, timeout=180)
        labels = _role_labels(world, cluster)
        if engine != "mariadb":
            assert labels[primary] == "replica", labels
            assert sorted(labels.values()) == ["primary", "replica", "replica"], labels
        assert present(engine, uri) == set(range(1, 102))
    delete_cluster(world.tenant, cid)
    _nothing_left(world, cluster)
