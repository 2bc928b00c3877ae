"""The create's *place nodes* step, on the Kubernetes provider: the node is
placed, then held (a pod on its volume that waits, from the node's own
declaration), so the engine's bootstrap that follows has a pod to exec into;
the step itself knows no provider (``Provider.holds`` says whether to hold).

Hoard's services are built in this process, with the Kubernetes provider
offered from a kubeconfig naming kmock's emulator (with the exec stand-in in
front of it, tests/kube_exec.py); the step's own function runs on a cluster
written to the store as the API writes one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.providers.kubernetes import names
from hoard.store import models
from hoard.workflows.cluster_create import _place
from hoard.workflows.services import Services
from tests.kube_exec import StandInExec
from tests.kube_support import MockApi, emulated_services, held, mock_api

PROJECT = "0190a3b4-0000-7000-8000-0000000000f0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000f1"
NODE = "0190a3b4-0000-7000-8000-0000000000f2"
ADDRESS = ("hoard-a0123456789ab.hoard.svc", 6379)


@pytest.fixture()
def world() -> Iterator[tuple[Services, MockApi]]:
    box: dict[str, MockApi] = {}
    standin = StandInExec(pods=lambda: box["api"].objects("pods"))
    with mock_api(front=standin.front) as api, emulated_services(api, "hoard-k8s-seam-") as svc:
        box["api"] = api
        yield svc, api


def _cluster(svc: Services, provider: str) -> None:
    """A standalone Redis cluster and its node, as the API records them."""
    with svc.store.session() as s:
        s.add(models.Project(id=PROJECT, name="seam", quota_clusters=5, quota_nodes=5,
                             quota_storage_gb=50))
        s.flush()
        s.add(models.Cluster(
            id=CLUSTER, project_id=PROJECT, name="held", engine="redis", version="7.0",
            size="small", node_count=1, storage_gb=1, status=ClusterStatus.BUILDING,
            provider=provider, admin_user="admin", admin_password=svc.box.seal("a"),
            service_password=svc.box.seal("s")))
        s.flush()
        s.add(models.Node(id=NODE, cluster_id=CLUSTER, ordinal=0, role="primary",
                          provider=provider, status=NodeStatus.PENDING, limits={}))


def _loaded(s: Session) -> models.Cluster:
    cluster = s.get(models.Cluster, CLUSTER)
    assert cluster is not None
    return cluster


def test_place_nodes_holds_each_node_on_its_volume(world: tuple[Services, MockApi]) -> None:
    svc, api = world
    assert svc.providers["kubernetes"].holds and not svc.providers["local"].holds
    _cluster(svc, "kubernetes")
    with svc.store.session() as s:
        _place(s, _loaded(s), ADDRESS)
    assert set(api.objects("persistentvolumeclaims")) == {names.claim(NODE)}
    sts = held(api, NODE)
    labels = sts["metadata"]["labels"]
    assert labels[names.PROJECT] == PROJECT and labels[names.CLUSTER] == CLUSTER
    with svc.store.session() as s:
        node = s.get(models.Node, NODE)
        assert node is not None and (node.host, node.port) == ADDRESS

    with svc.store.session() as s:  # the step again (a worker died after it): no change
        _place(s, _loaded(s), ADDRESS)
    assert api.objects("statefulsets")[names.node_object(NODE)] == sts
