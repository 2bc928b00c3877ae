"""A replicated cluster's members on the Kubernetes provider, through the
workflows' own steps: *place nodes* places each member with its engine's HA
ports behind its per-node Service and holds it; its certificate and its HA
configuration are written into its pod by exec (``install_tls``,
``configure_node``), listening on the pod's interfaces and announcing the
member's per-node Service name; *start* declares the server and its sidecars
with every port. Nothing of the machinery runs: kmock's emulator runs no pod,
the exec stand-in (tests/kube_exec.py) runs the runner's commands locally,
in a directory playing the member's volume."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.providers.kubernetes import names
from hoard.store import models
from hoard.workflows.cluster_create import _place, install_tls
from hoard.workflows.members import configure_node, start_node, topology
from hoard.workflows.services import Services
from hoard.workflows.steps import load_cluster
from tests.kube_exec import StandInExec
from tests.kube_support import NAMESPACE, MockApi, emulated_services, mock_api, pod_from_set

PROJECT = "0190a3b4-0000-7000-8000-0000000000e0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000e1"
NODES = [f"0190a3b4-0000-7000-8000-0000000000e{i}" for i in (2, 3, 4)]
VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}
RUNNING = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}],
           "containerStatuses": [{"name": "server", "ready": False, "image": "i",
                                  "imageID": "", "restartCount": 0,
                                  "state": {"running": {}}}]}


@pytest.fixture()
def world() -> Iterator[tuple[Services, MockApi]]:
    box: dict[str, MockApi] = {}
    standin = StandInExec(pods=lambda: box["api"].objects("pods"))
    with mock_api(front=standin.front) as api, \
            emulated_services(api, "hoard-k8s-members-") as svc:
        box["api"] = api
        yield svc, api


def _record(svc: Services, engine: str) -> None:
    """A three-node cluster and its nodes, as the API records them."""
    with svc.store.session() as s:
        s.add(models.Project(id=PROJECT, name="members", quota_clusters=5, quota_nodes=5,
                             quota_storage_gb=50))
        s.flush()
        s.add(models.Cluster(
            id=CLUSTER, project_id=PROJECT, name="ha", engine=engine,
            version=VERSIONS[engine], size="small", node_count=3, storage_gb=1,
            durability="sync" if engine == "mariadb" else "async",
            status=ClusterStatus.BUILDING, provider="kubernetes", admin_user="admin",
            admin_password=svc.box.seal("a"), service_password=svc.box.seal("s")))
        s.flush()
        for i, node in enumerate(NODES):
            s.add(models.Node(id=node, cluster_id=CLUSTER, ordinal=i,
                              role="primary" if i == 0 else "replica", provider="kubernetes",
                              status=NodeStatus.PENDING, limits={}))


def _pod_on(api: MockApi, node_id: str, volume: str) -> None:
    """Play the StatefulSet controller and the kubelet: the node's pod from its
    StatefulSet's template, running, its volume mounted on ``volume``."""
    pod_from_set(api, api.objects("statefulsets")[names.node_object(node_id)], RUNNING, volume)


def _lines(path: Path, *keys: str) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.startswith(keys)]


EXPECTED_PORTS = {"postgresql": ("patroni",), "redis": ("sentinel",),
                  "mariadb": ("galera", "ist", "sst")}


@pytest.mark.parametrize("engine", ["postgresql", "redis", "mariadb"])
def test_members_are_placed_configured_and_declared_for_their_pods(
        world: tuple[Services, MockApi], engine: str) -> None:
    svc, api = world
    _record(svc, engine)
    with svc.store.session() as s:
        placed = s.get(models.Cluster, CLUSTER)
        assert placed is not None
        assert _place(s, placed, None) is True
    cluster = load_cluster(CLUSTER)
    assert cluster is not None
    hosts = {n.id: f"{names.node_object(n.id)}.{NAMESPACE}.svc" for n in cluster.nodes}
    for node in cluster.nodes:
        assert node.host == hosts[node.id]
        assert set(node.ports or {}) == set(EXPECTED_PORTS[engine])
        service = api.objects("services")[names.node_object(node.id)]
        assert service["spec"]["ports"] == [
            {"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
            for n, p in sorted({"client": node.port, **(node.ports or {})}.items())]
    first = cluster.nodes[0]
    ctx = svc.node_context(cluster, first)
    assert (ctx.host, ctx.listen) == (hosts[first.id], "0.0.0.0")  # noqa: S104 - the pod's
    topo = topology(cluster)
    a, b, c = topo.members
    assert [m.host for m in topo.members] == [hosts[n] for n in NODES]

    with tempfile.TemporaryDirectory(prefix="hoard-k8s-member-", dir="/tmp") as volume:
        _pod_on(api, first.id, volume)
        install_tls(cluster, first)
        configure_node(cluster, first, topo=topo)
        root = Path(volume)
        if engine == "postgresql":
            config = json.loads((root / "patroni/patroni.yml").read_text())
            assert [{k: config[part][k] for k in ("listen", "connect_address")}
                    for part in ("restapi", "postgresql")] == [
                {"listen": f"0.0.0.0:{a.ports['patroni']}",
                 "connect_address": f"{a.host}:{a.ports['patroni']}"},
                {"listen": f"0.0.0.0:{a.port}", "connect_address": f"{a.host}:{a.port}"}]
        elif engine == "redis":
            assert _lines(root / "conf/redis.conf", "bind ", "replica-announce-ip ") == [
                "bind 0.0.0.0", f"replica-announce-ip {a.host}"]
            assert _lines(root / "conf/sentinel.conf", "bind ", "sentinel announce",
                          "sentinel resolve", "sentinel monitor ") == [
                "bind 0.0.0.0", f"sentinel announce-ip {a.host}",
                f"sentinel announce-port {a.ports['sentinel']}",
                "sentinel resolve-hostnames yes", "sentinel announce-hostnames yes",
                f"sentinel monitor hoard-{CLUSTER} {a.host} {a.port} 2"]
        else:
            galera = [f"{m.host}:{m.ports['galera']}" for m in (a, b, c)]
            assert _lines(root / "conf/my.cnf", "bind-address", "wsrep_cluster_address",
                          "wsrep_node_address", "wsrep_sst_receive_address") == [
                "bind-address = 0.0.0.0",
                f'wsrep_cluster_address = "gcomm://{",".join(galera)}"',
                f'wsrep_node_address = "{galera[0]}"',
                f'wsrep_sst_receive_address = "{a.host}:{a.ports["sst"]}"']
            [options] = _lines(root / "conf/my.cnf", "wsrep_provider_options")
            assert options.split('"')[1].split(";")[:3] == [
                f"gmcast.listen_addr=tcp://0.0.0.0:{a.ports['galera']}",
                f"ist.recv_addr={a.host}:{a.ports['ist']}",
                f"ist.recv_bind=0.0.0.0:{a.ports['ist']}"]
        start_node(cluster, first, ctx, topo)  # reads the member's files first
    declared: dict[str, Any] = api.objects("statefulsets")[names.node_object(first.id)]
    containers = declared["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == [
        "server", *svc.engines[engine].sidecars]  # type: ignore[attr-defined]
    assert containers[0]["ports"] == [
        {"name": n, "containerPort": p, "protocol": "TCP"}
        for n, p in sorted({"client": first.port, **(first.ports or {})}.items())]
    assert declared["metadata"]["labels"][names.CLUSTER] == CLUSTER
