"""Delete a cluster: destroy every node, then forget the cluster.

The operation row stays, so a client can follow a delete to its end.
"""

from __future__ import annotations

from dbos import DBOS

from hoard.domain.status import ClusterStatus
from hoard.engines.base import Replication
from hoard.store import models, operations
from hoard.workflows.backups import mark_failed, run_backup
from hoard.workflows.gate import gated
from hoard.workflows.services import services
from hoard.workflows.steps import load_cluster, recorded, short_reason

STEPS = ["destroy nodes", "remove records"]
FINAL_BACKUP_STEPS = ["final backup", *STEPS]


@DBOS.step()
def destroy_nodes(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "destroy nodes"):
        cluster = load_cluster(cluster_id)
        for node in cluster.nodes if cluster else []:
            svc.provider_for(node).destroy(node.id)
        provider = svc.provider_for(cluster) if cluster else svc.provider
        provider.remove_endpoint(cluster_id)
        provider.remove_pooler(cluster_id)
        engine = svc.engines[cluster.engine] if cluster else None
        if isinstance(engine, Replication) and engine.dcs_prefix(cluster_id):
            provider.forget_dcs(cluster_id, engine.dcs_prefix(cluster_id))


@DBOS.step()
def remove_records(op_id: str, cluster_id: str) -> None:
    svc = services()
    with recorded(op_id, "remove records"), svc.store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            s.delete(cluster)
    with svc.store.session() as s:
        operations.finish(s, op_id)


@DBOS.step()
def fail(op_id: str, cluster_id: str, reason: str) -> None:
    with services().store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            cluster.status_reason = f"delete failed: {reason}"
        operations.finish(s, op_id, error=reason)


@DBOS.step()
def final_backup(op_id: str, cluster_id: str) -> None:
    """Back the cluster up before it goes; if that fails, nothing is deleted."""
    svc = services()
    with svc.store.session() as s:
        op = s.get(models.Operation, op_id)
        backup_id = op.params.get("final_backup_id") if op else None
    if not backup_id:
        return
    with recorded(op_id, "final backup"):
        cluster = load_cluster(cluster_id)
        assert cluster is not None
        try:
            run_backup(svc, cluster, backup_id)
        except Exception as exc:
            mark_failed(svc, backup_id, short_reason(exc))
            raise


@DBOS.step()
def keep_cluster(op_id: str, cluster_id: str, reason: str) -> None:
    """A delete stopped before destroying anything: the cluster serves on."""
    with services().store.session() as s:
        cluster = s.get(models.Cluster, cluster_id)
        if cluster is not None:
            cluster.status = ClusterStatus.ACTIVE
            cluster.status_reason = ""
        operations.finish(s, op_id, error=f"final backup failed, nothing deleted: {reason}")


@DBOS.workflow()
@gated
def delete_cluster(op_id: str, cluster_id: str) -> None:
    try:
        final_backup(op_id, cluster_id)
    except Exception as exc:
        keep_cluster(op_id, cluster_id, short_reason(exc))
        return
    try:
        destroy_nodes(op_id, cluster_id)
        remove_records(op_id, cluster_id)
    except Exception as exc:
        fail(op_id, cluster_id, short_reason(exc))
