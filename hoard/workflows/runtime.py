"""Durable execution with DBOS: workflows and their steps are checkpointed in the
state store's database, and a restarted worker resumes them where they stopped.

Why DBOS (see docs/architecture.md): it is a library, not a server to run; it
keeps its checkpoints in the same SQLite file or PostgreSQL database family as
the state store, so the embedded default needs nothing extra; and recovery of
pending workflows at launch is built in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from hoard import __version__
from hoard.domain.status import OperationStatus
from hoard.settings import Settings
from hoard.store import models
from hoard.workflows import (
    accounts,
    backups,
    cluster_create,
    cluster_delete,
    cluster_scale,
    cluster_update,
)
from hoard.workflows.services import services

log = logging.getLogger(__name__)


def launch(settings: Settings) -> None:
    """Start DBOS; it recovers this worker's unfinished workflows on its own."""
    config: DBOSConfig = {
        "name": "hoard",
        "system_database_url": settings.workflow_store_url,
        # A fixed version: workflows started by this release resume after a restart
        # even if unrelated code changed. Bump with releases that change step order.
        "application_version": __version__,
        "executor_id": settings.worker_id,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    resume_unstarted()


def shutdown() -> None:
    DBOS.destroy(workflow_completion_timeout_sec=0)


def start(op: models.Operation) -> None:
    """Start the workflow for an operation. The workflow id is the operation id, so
    the same operation never runs twice."""
    if op.cluster_id is None:
        raise ValueError(f"operation {op.id} has no cluster")
    target, args = _workflow(op.kind, op.id, op.cluster_id, dict(op.params))
    with SetWorkflowID(op.id):
        DBOS.start_workflow(target, *args)


def _workflow(
    kind: str, op_id: str, cluster_id: str, params: dict[str, Any]
) -> tuple[Callable[..., None], tuple[Any, ...]]:
    """The registered workflow function for an operation of ``kind``, and its arguments."""
    if kind in accounts.PLANS:
        return accounts.account_change, (op_id, cluster_id, kind, params)
    if kind == "update":
        return cluster_update.update_cluster, (op_id, cluster_id, params)
    if kind == "backup":
        return backups.backup_cluster, (op_id, cluster_id, params["backup_id"])
    if kind in cluster_update.ACTIONS:
        return cluster_update.cluster_action, (op_id, cluster_id, kind)
    if kind == "scale":
        return cluster_scale.scale_cluster, (op_id, cluster_id, params)
    if kind == "switchover":
        return cluster_scale.switchover_cluster, (op_id, cluster_id, params["node_id"])
    if kind == "replace":
        return cluster_scale.replace_lost_node, (op_id, cluster_id, params["node_id"])
    if kind == "promote":
        return cluster_scale.promote_node, (op_id, cluster_id, params)
    simple: dict[str, Callable[..., None]] = {
        "create": cluster_create.create_cluster,
        "delete": cluster_delete.delete_cluster,
    }
    return simple[kind], (op_id, cluster_id)


def resume_unstarted() -> None:
    """Start workflows for operations recorded but never started (the API committed
    the operation and died before starting its workflow)."""
    with services().store.session() as s:
        pending = s.query(models.Operation).filter(
            models.Operation.status == OperationStatus.RUNNING
        ).all()
    for op in pending:
        if DBOS.get_workflow_status(op.id) is None:
            log.info("starting workflow for recorded operation %s", op.id)
            start(op)
