"""Storage autoscaling on the Kubernetes provider, end to end in this process:
Hoard's services and its workflow runtime (DBOS, on the SQLite store) built
here, the provider offered from a kubeconfig naming kmock's emulator, a Redis
node reached only by exec (tests/kube_backup_support.py says what stands in
for the pod). Its volume, a real filesystem of 1 GB, fills past the
threshold, then until it is full; the observer's passes read it by exec into
the pod, raise the alarms and say the node's storage is full (the cluster
DEGRADED); the autoscaler's pass measures again, decides, and starts the storage
update, whose workflow expands the node's claim through the provider, with
the server up. While the claim is being resized (the filesystem not grown
yet) nothing is read, so no second growth starts; once the resizer has grown
it (played here, with the binder: the emulator runs no controllers), the
larger filesystem is read and the cluster is under its threshold."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from hoard.domain.nodes import Volume
from hoard.domain.status import ClusterStatus, NodeStatus, OperationStatus
from hoard.domain.storage import GIB
from hoard.engines.redis import Redis
from hoard.providers.kubernetes import names
from hoard.providers.kubernetes.provider import KubernetesProvider
from hoard.store import models
from hoard.workflows import membership, runtime
from hoard.workflows.autoscale import autoscale_once
from hoard.workflows.observer import observe_once
from hoard.workflows.services import Services
from tests.kube_backup_support import (
    ExecNode,
    ExecWorld,
    exec_world_with_services,
    record_cluster,
)
from tests.kube_support import node_spec

pytestmark = pytest.mark.integration
ENGINE = Redis()
PROJECT = "0190a3b4-0000-7000-8000-0000000000d0"
CLUSTER = "0190a3b4-0000-7000-8000-0000000000d1"


@pytest.fixture()
def world() -> Iterator[tuple[ExecWorld, Services]]:
    with exec_world_with_services("hoard-kgrow-") as made:
        yield made


def _serving(served: ExecWorld, node_id: str) -> None:
    """The node started on the provider (its StatefulSet declares the server, not
    the holder), and the pod that makes, running, as the kubelet reports it;
    the server's process is the one the stand-in for the pod already runs."""
    spec = replace(node_spec(ENGINE.name, node_id, node_id, storage_gb=1),
                   volume=Volume(1, str(served.local.nodes_dir / node_id)))
    served.provider.start(node_id, spec)
    served.pod_running(node_id, ready=True)


def _bind(served: ExecWorld, node_id: str, capacity: str) -> None:
    """The claim's status as the binder (then the resizer) writes it."""
    claim: dict[str, Any] = dict(served.api.objects("persistentvolumeclaims")[
        names.claim(node_id)])
    claim["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                       "capacity": {"storage": capacity}}
    served.api.put("persistentvolumeclaims", names.claim(node_id), claim)


def _fill_to(root: Path, percent: int) -> None:
    """Blocks really taken on the node's volume, up to ``percent`` of it."""
    st = os.statvfs(root)
    total, used = st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize
    fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        more = total * percent // 100 - used
        if more > 0:
            os.posix_fallocate(fd, os.fstat(fd).st_size, more)
    finally:
        os.close(fd)


def _until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def _events(svc: Services, prefix: str) -> list[tuple[str, str]]:
    with svc.store.session() as s:
        return [(e.kind, e.message) for e in s.scalars(
            select(models.Event).where(models.Event.cluster_id == CLUSTER)
            .order_by(models.Event.id)) if e.kind.startswith(prefix)]


def _cluster(svc: Services) -> tuple[models.Cluster, models.Node]:
    with svc.store.session() as s:
        cluster = s.get(models.Cluster, CLUSTER)
        assert cluster is not None
        node, = cluster.nodes
        s.expunge_all()
        return cluster, node


def _run_id(node: ExecNode) -> str:
    creds = node.ctx.service
    with redis.Redis(host=node.ctx.host, port=node.ctx.port, username=creds.user,
                     password=creds.password, ssl=True, ssl_ca_certs=node.ca_file,
                     socket_timeout=10) as client:
        return str(client.info("server")["run_id"])


def test_a_filling_volume_is_read_by_exec_and_its_claim_expanded(
    world: tuple[ExecWorld, Services],
) -> None:
    served, svc = world
    with served.node(ENGINE) as node:
        node_id = node.ctx.node_id
        root = served.local.nodes_dir / node_id  # the volume, as the pod mounts it
        if not os.path.ismount(root):
            pytest.skip("no filesystem of its own for the node's volume here (loop "
                        f"mounts: {served.local.volume_note})")
        record_cluster(svc, node, PROJECT, CLUSTER, "grows", "redis",
                       storage_autoscale={"max_gb": 3, "threshold_percent": 80})
        _serving(served, node_id)
        _bind(served, node_id, "1Gi")
        started = _run_id(node)
        runtime.launch(svc.settings)
        try:
            with ThreadPoolExecutor(4) as pool:
                _fill_to(root, 86)
                assert observe_once(pool, 10) == 1
                _, recorded = _cluster(svc)
                assert recorded.storage_total_bytes and recorded.storage_used_bytes
                assert recorded.storage_used_bytes * 100 // recorded.storage_total_bytes >= 86
                assert recorded.status == NodeStatus.HEALTHY
                assert [k for k, _ in _events(svc, "storage.")] == ["storage.alarm"]

                # Full (under a tenth free): the node is said to be, the cluster DEGRADED.
                _fill_to(root, 96)
                kube = svc.providers["kubernetes"]
                assert isinstance(kube, KubernetesProvider)
                kube.readings.forget(node_id)  # kept 10 s: the pass after that reads it
                observe_once(pool, 10)
                cluster, recorded = _cluster(svc)
                assert recorded.status == NodeStatus.UNHEALTHY
                assert recorded.status_reason.startswith("storage full ("), recorded.status_reason
                assert cluster.status == ClusterStatus.DEGRADED
                reads = [a for a in served.standin.argvs() if "stat -f" in " ".join(a)]
                assert reads and all(a[3] == str(root) for a in reads)

                assert autoscale_once() == 1
                (kind, message), = _events(svc, "storage.autoscale")
                assert kind == "storage.autoscaled"
                assert message.endswith("past the autoscaling threshold of 80%: growing "
                                        "storage from 1 to 2 GB (max 3 GB)"), message
                with svc.store.session() as s:
                    op = s.scalar(select(models.Operation).where(
                        models.Operation.cluster_id == CLUSTER))
                    assert op is not None
                    op_id = op.id

                def finished() -> models.Operation | None:
                    with svc.store.session() as s:
                        found = s.get(models.Operation, op_id)
                        return found if found and found.status != OperationStatus.RUNNING \
                            else None
                done = _until(finished)
                assert done.status == OperationStatus.SUCCEEDED, done.error
                claim = served.api.objects("persistentvolumeclaims")[names.claim(node_id)]
                assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
                assert [m for _, m in _events(svc, "node.storage_grown")] == [
                    "node 0: storage grown to 2 GB (online: the server kept running; the "
                    "claim is expanded in place)"]
                cluster, _ = _cluster(svc)
                assert (cluster.storage_gb, cluster.status) == (2, ClusterStatus.ACTIVE)

                # Being resized: the old filesystem is not read, no second growth.
                assert autoscale_once() == 0
                assert [k for k, _ in _events(svc, "storage.autoscale")] == [
                    "storage.autoscaled"]

                served.local.grow_storage(node_id, 2)  # the resizer grows the filesystem
                _bind(served, node_id, "2Gi")
                observe_once(pool, 10)
                _, recorded = _cluster(svc)
                assert recorded.storage_total_bytes and recorded.storage_used_bytes
                assert recorded.storage_total_bytes > 1.5 * GIB
                assert recorded.storage_used_bytes * 100 // recorded.storage_total_bytes < 80
                assert autoscale_once() == 0
                cluster, recorded = _cluster(svc)
                assert (cluster.status, recorded.status) == (ClusterStatus.ACTIVE,
                                                             NodeStatus.HEALTHY)
                assert [k for k, _ in _events(svc, "storage.")] == [
                    "storage.alarm", "storage.alarm", "storage.autoscaled", "storage.cleared"]
            assert _run_id(node) == started  # the same server throughout
        finally:
            try:
                runtime.shutdown()
            finally:
                membership.remove_fence()  # this process goes on, no worker any more
                (root / "filler").unlink(missing_ok=True)
