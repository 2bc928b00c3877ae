"""A node that a scale adds on the Kubernetes provider is held (a pod on its
volume that waits) before anything is written into it; while its pod cannot
run, the scale's step says why ("waiting: node 1: not scheduled: ..."), at
the start deadline it fails naming the reason, and the failed change removes
the new node, its row and every object of it, leaving the first node.

Hoard's services are built in this process with the Kubernetes provider
offered from a kubeconfig naming kmock's emulator (tests/kube_support.py),
which runs no controllers: the test writes the pod the new node's
StatefulSet would make, with the status a kubelet would report. The scale's
own step function runs on a replicated cluster written to the store as the
API writes one. (Replicated clusters are not offered on this provider yet,
so the API would refuse this scale: docs/architecture.md says why.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from hoard.store import models, operations
from hoard.workflows.cluster_scale import SCALE_STEPS, change_failed, change_membership
from hoard.workflows.services import Services
from hoard.workflows.steps import short_reason
from tests.kube_support import UNSCHEDULABLE, MockApi, emulated_services, make_pod, mock_api

PROJECT = "0190a3b4-0000-7000-8000-0000000000e0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000e1"
FIRST = "0190a3b4-0000-7000-8000-0000000000e2"
DEADLINE = 3.0  # seconds: HOARD_KUBERNETES_START_DEADLINE
WHY = "not scheduled: Unschedulable 0/3 nodes are available: 3 Insufficient memory."


@pytest.fixture()
def world() -> Iterator[tuple[Services, MockApi]]:
    with mock_api() as api, emulated_services(api, "hoard-k8s-scale-",
                                              kubernetes_start_deadline=DEADLINE) as svc:
        yield svc, api


def _cluster(svc: Services) -> None:
    """A replicated Redis cluster of one node so far, as the API records one
    before a scale to two."""
    with svc.store.session() as s:
        s.add(models.Project(id=PROJECT, name="scale", quota_clusters=5, quota_nodes=5,
                             quota_storage_gb=50))
        s.flush()
        s.add(models.Cluster(
            id=CLUSTER, project_id=PROJECT, name="grows", engine="redis", version="7.0",
            size="small", node_count=1, storage_gb=1, status=ClusterStatus.UPDATING,
            provider="kubernetes", admin_user="admin", admin_password=svc.box.seal("a"),
            service_password=svc.box.seal("s"), rw_port=6379))
        s.flush()
        s.add(models.Node(id=FIRST, cluster_id=CLUSTER, ordinal=0, role="primary",
                          provider="kubernetes", status=NodeStatus.HEALTHY, limits={},
                          host=f"{names.node_object(FIRST)}.hoard.svc", port=10000))


def _detail(svc: Services, op_id: str) -> str:
    with svc.store.session() as s:
        op = s.get(models.Operation, op_id)
        assert op is not None
        running = [st for st in op.steps if st["status"] == "running"]
        return str(running[0].get("detail", "")) if running else ""


def test_a_new_nodes_pod_is_waited_for_with_its_reason_and_removed_on_failure(
    world: tuple[Services, MockApi],
) -> None:
    svc, api = world
    _cluster(svc)
    with svc.store.session() as s:
        op_id = operations.new_operation(s, PROJECT, CLUSTER, "scale", SCALE_STEPS,
                                         params={"nodes": 2}).id
    failed: list[BaseException] = []

    def scale() -> None:
        try:
            change_membership(op_id, CLUSTER, {"nodes": 2})
        except BaseException as exc:  # the workflow's: handed to change_failed below
            failed.append(exc)

    began = time.monotonic()
    step = threading.Thread(target=scale)
    step.start()
    new = make_pod(api, UNSCHEDULABLE)  # its holder's pod, as the kubelet reports it
    assert new != FIRST
    deadline = time.monotonic() + 30
    while f"waiting: node 1: {WHY}" not in _detail(svc, op_id):
        assert step.is_alive() and time.monotonic() < deadline, (failed, _detail(svc, op_id))
        time.sleep(0.05)
    step.join(DEADLINE + 30)
    assert not step.is_alive()
    assert time.monotonic() - began >= DEADLINE
    assert len(failed) == 1 and str(failed[0]) == (
        f"the new nodes were not ready within {DEADLINE:.0f}s: node 1: {WHY}")

    change_failed(op_id, CLUSTER, short_reason(failed[0]))  # what the workflow runs next
    with svc.store.session() as s:
        cluster = s.get(models.Cluster, CLUSTER)
        op = s.get(models.Operation, op_id)
        assert cluster is not None and op is not None
        assert [n.id for n in cluster.nodes] == [FIRST] and cluster.node_count == 1
        assert cluster.status == ClusterStatus.DEGRADED and WHY in cluster.status_reason
        assert op.status == "failed" and WHY in op.error
        assert [st["status"] for st in op.steps] == ["failed", "pending"]
    kube = svc.providers["kubernetes"].kube  # type: ignore[attr-defined]
    for kind in KINDS:
        assert kube.names(kind, {names.NODE: new}) == [], kind
    kube.delete("Pod", names.pod(new))  # the test's pod, as the garbage collector would
