"""A throwaway node (backup verification, hoard/workflows/scratch.py) on the
Kubernetes provider: placed with an owner and held like a created node, so
its runner has a pod to exec into, labelled as a cluster of its own in the
backup's project (never the backup's cluster, which may still run), and
removed leaving nothing. The restore itself, by exec, is tested on its own
(tests/test_kubernetes_backup_*.py); no verification has run there end to end
(the emulator runs no pods): this runs the throwaway node's own functions, with
Hoard's services built in this process and the provider offered from a
kubeconfig naming kmock's emulator (tests/kube_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.client import KINDS
from hoard.store import models
from hoard.workflows import scratch
from hoard.workflows.scratch import Scratch
from hoard.workflows.services import Services
from tests.kube_support import RESOURCES, MockApi, emulated_services, held, mock_api

PROJECT = "0190a3b4-0000-7000-8000-0000000000e0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000e1"  # the backup's: it may still run
BACKUP = "0190a3b4-0000-7000-8000-0000000000e2"
NODE = "0190a3b4-0000-7000-8000-0000000000e3"


@pytest.fixture()
def world() -> Iterator[tuple[Services, MockApi]]:
    with mock_api() as api, emulated_services(api, "hoard-k8s-scratch-") as svc:
        yield svc, api


def _backup(svc: Services) -> None:
    """A Redis backup of a cluster, as the backup workflow records one."""
    with svc.store.session() as s:
        s.add(models.Project(id=PROJECT, name="scratch", quota_clusters=5, quota_nodes=5,
                             quota_storage_gb=50))
        s.flush()
        s.add(models.Backup(
            id=BACKUP, project_id=PROJECT, cluster_id=CLUSTER, cluster_name="kept",
            engine="redis", version="7.0", storage_gb=1, kind="full", reason="manual",
            status="available", object_key="k", admin_user="admin",
            admin_password=svc.box.seal("a"), service_password=svc.box.seal("s")))


def test_a_throwaway_node_is_held_with_its_owner_and_removed_leaving_nothing(
    world: tuple[Services, MockApi],
) -> None:
    svc, api = world
    _backup(svc)
    placed = scratch.place(svc, Scratch(NODE, BACKUP, "kubernetes", "small"))
    assert (placed.host, placed.port) != ("", 0)
    sts = held(api, NODE)
    labels = sts["metadata"]["labels"]
    assert (labels[names.PROJECT], labels[names.CLUSTER], labels[names.NODE]) == (
        PROJECT, NODE, NODE)  # a cluster of its own: never the backup's
    where = svc.providers["kubernetes"]
    assert where.waiting_for(NODE) == "no pod yet: its StatefulSet has not made it"

    with svc.store.session() as s:
        backup = s.get(models.Backup, BACKUP)
        assert backup is not None
    ctx = scratch.context(svc, placed, backup)
    spec = scratch.declaration(svc, placed, backup, ctx, where.runner(NODE))
    assert spec.owner is not None and spec.owner.cluster_id == NODE
    where.start(NODE, spec)  # what scratch.start declares: its cluster's objects too
    assert api.objects("networkpolicies") and api.objects("poddisruptionbudgets")
    for kind in KINDS:
        assert where.kube.names(kind, {names.CLUSTER: CLUSTER}) == [], kind

    scratch.destroy(svc, placed)
    scratch.destroy(svc, placed)  # again (a worker finishing it after a crash): fine
    for kind in KINDS:
        for by in ({names.CLUSTER: NODE}, {names.NODE: NODE},
                   {names.MANAGED_BY: names.MANAGER}):
            assert where.kube.names(kind, by) == [], (kind, by)
    for resource in RESOURCES:
        assert api.objects(resource.rsplit("/", 1)[1]) == {}, resource
