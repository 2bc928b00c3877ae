"""Create a cluster: an ordered list of idempotent "ensure X" steps.

Each step may run twice (a worker dies after the work but before DBOS records
it), so each checks what already exists before doing anything. When a step
fails, the workflow compensates: every node is destroyed, the cluster is marked
FAILED with the reason, and nothing half-made is left behind.
"""

from __future__ import annotations

import time
from typing import Any

from dbos import DBOS
from sqlalchemy import select

from hoard.domain.catalog import SIZES
from hoard.domain.status import ClusterStatus, NodeStatus
from hoard.engines.base import Backups, IncrementalBackups, NodeContext
from hoard.store import models, operations
from hoard.workflows.backups import restore_inputs
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason

STEPS = ["place nodes", "bootstrap", "start", "create admin account", "activate"]
RESTORE_STEPS = ["place nodes", "restore data", "start", "finish restore",
                 "create admin account", "activate"]
READY_TIMEOUT = 120.0


@DBOS.step()
def place_nodes(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "place nodes"), svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        assert cluster is not None
        taken = {p for p in s.scalars(select(models.Node.port)) if p is not None}
        for node in cluster.nodes:
            placement = svc.provider.place(node.id, taken, cluster.storage_gb)
            if node.port is None:
                node.host, node.port = placement.host, placement.port
                taken.add(placement.port)
            node.limits = svc.provider.apply_limits(
                node.id, SIZES[cluster.size], cluster.storage_gb
            )


@DBOS.step()
def bootstrap_nodes(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "bootstrap"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        for node in cluster.nodes:
            engine.bootstrap(svc.node_context(cluster, node), svc.provider.runner(node.id))
            _install_config(cluster, node)


def _install_config(cluster: models.Cluster, node: models.Node) -> None:
    """TLS certificate and configuration files for a node (after its data exists)."""
    svc = services()
    engine = svc.engines[cluster.engine]
    runner = svc.provider.runner(node.id)
    cert = svc.ca.issue_server_cert(node.id, [node.host or "127.0.0.1", "localhost"])
    engine.install_tls(runner, cert.cert_pem, cert.key_pem)
    engine.configure(svc.node_context(cluster, node), runner)


@DBOS.step()
def read_params(op_id: str) -> dict[str, Any]:
    with services().store.session() as s:
        op = s.get(models.Operation, op_id)
        return dict(op.params) if op else {}


@DBOS.step()
def restore_nodes(op_id: str, cluster_id: str, restore: dict[str, Any]) -> None:
    """Lay down each node's data from the backup (and logs up to the target time)."""
    svc = services()
    with recorded(op_id, "restore data"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        assert isinstance(engine, Backups)
        for node in cluster.nodes:
            chain, logs = restore_inputs(svc, restore["backup_id"], restore.get("time"))
            ctx, runner = svc.node_context(cluster, node), svc.provider.runner(node.id)
            if len(chain) > 1:
                assert isinstance(engine, IncrementalBackups)
                engine.restore_chain(ctx, runner, list(chain), logs, restore.get("time"))
            else:
                (backup, meta), = chain
                engine.restore(ctx, runner, backup, meta, logs, restore.get("time"))
            _install_config(cluster, node)


@DBOS.step()
def finish_restore(op_id: str, cluster_id: str, restore: dict[str, Any]) -> None:
    svc = services()
    with recorded(op_id, "finish restore"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        engine = svc.engines[cluster.engine]
        assert isinstance(engine, Backups)
        for node in cluster.nodes:
            engine.finish_restore(svc.node_context(cluster, node), svc.ca_file,
                                  svc.provider.runner(node.id), restore.get("time"))


def wait_ready(
    cluster: models.Cluster, node: models.Node, timeout: float, ctx: NodeContext | None = None
) -> None:
    """Poll the node over its own protocol until it answers, or fail with the reason."""
    svc = services()
    engine = svc.engines[cluster.engine]
    ctx = ctx or svc.node_context(cluster, node)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        health = engine.health(ctx, svc.ca_file, timeout=2)
        if health.ok:
            return
        if not svc.provider.is_running(node.id):
            raise RuntimeError(f"node {node.ordinal} exited while starting: {health.detail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node.ordinal} not ready after {timeout:.0f}s: "
                               f"{health.detail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


@DBOS.step()
def start_nodes(op_id: str, cluster_id: str) -> None:
    with recorded(op_id, "start"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        start_all(cluster)


def start_all(cluster: models.Cluster, configure: bool = False) -> None:
    """Start every node that is not running (optionally rewriting its files first),
    then wait until each answers."""
    svc = services()
    engine = svc.engines[cluster.engine]
    for node in cluster.nodes:
        ctx = svc.node_context(cluster, node)
        runner = svc.provider.runner(node.id)
        if configure:
            engine.configure(ctx, runner)
        svc.provider.start(node.id, engine.process(ctx, runner))
    for node in cluster.nodes:
        wait_ready(cluster, node, READY_TIMEOUT)


@DBOS.step()
def create_admin(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "create admin account"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        primary = cluster.nodes[0]
        svc.engines[cluster.engine].initialize(svc.node_context(cluster, primary), svc.ca_file)


@DBOS.step()
def activate(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "activate"), svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        assert cluster is not None
        for node in cluster.nodes:
            node.status = NodeStatus.HEALTHY
            node.status_reason = ""
            node.observed_at = models.utcnow()
        cluster.status = ClusterStatus.ACTIVE
        cluster.status_reason = ""
    with svc.store.session() as s:
        operations.finish(s, op_id)


@DBOS.step()
def compensate(op_id: str, cluster_id: str, reason: str) -> None:
    """Undo a failed create: destroy every node, keep the cluster as FAILED with why."""
    svc = services()
    cluster = load_cluster(cluster_id)
    if cluster is not None:
        for node in cluster.nodes:
            svc.provider.destroy(node.id)
    with svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            cluster.status = ClusterStatus.FAILED
            cluster.status_reason = reason
            for node in cluster.nodes:
                node.status = NodeStatus.STOPPED
                node.host = node.port = None
        operations.finish(s, op_id, error=reason)


@DBOS.workflow()
def create_cluster(op_id: str, cluster_id: str) -> None:
    try:
        restore = read_params(op_id).get("restore")
        place_nodes(op_id, cluster_id)
        if restore:
            restore_nodes(op_id, cluster_id, restore)
        else:
            bootstrap_nodes(op_id, cluster_id)
        start_nodes(op_id, cluster_id)
        if restore:
            finish_restore(op_id, cluster_id, restore)
        create_admin(op_id, cluster_id)
        activate(op_id, cluster_id)
    except Exception as exc:
        compensate(op_id, cluster_id, short_reason(exc))
